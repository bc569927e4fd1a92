"""`tongban status`: the hub at a glance for an operator.

Health, adapters with circuit state and last success, running sync jobs, and the
issuer keys in the trust bundle. Each part that cannot be read says why instead of
failing the whole report.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Column, Table

from domain.errors import TongbanError
from exchange.cli.adapters import adapter_rows, id_column
from exchange.cli.client import (
    DevTokenOption,
    HubCallError,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    answer_json,
)
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from signing.jws import TYP_TRUST_BUNDLE, parse_compact

TIMEOUT = 5.0


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def _when(message: Any, field: str) -> str:
    if not message.HasField(field):
        return "-"
    return str(getattr(message, field).ToDatetime().isoformat(timespec="seconds"))


def status(
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print the hub's health, adapters, running sync jobs and signing keys."""
    console = Console()
    with HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key).channel() as channel:
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT
            )
        except grpc.RpcError as exc:
            raise HubCallError(f"hub at {hub} does not answer: {exc.code().name}") from exc
        serving = health.status == health_pb2.HealthCheckResponse.SERVING
        if as_json:
            typer.echo(json.dumps(_as_data(channel, hub, serving), ensure_ascii=False, indent=2))
            if not serving:
                raise typer.Exit(1)
            return
        console.print(f"hub {hub}: [bold]{'SERVING' if serving else 'NOT SERVING'}[/]")
        _adapters(channel, console)
        _sync_jobs(channel, console)
        _keys(channel, console)
    if not serving:
        raise typer.Exit(1)


def _as_data(channel: grpc.Channel, hub: str, serving: bool) -> dict[str, Any]:
    """The report as plain data; a part that cannot be read holds its error."""
    data: dict[str, Any] = {"hub": hub, "serving": serving}
    try:
        listed = adapters_pb2_grpc.AdapterRegistryStub(channel).List(
            adapters_pb2.ListRequest(), timeout=TIMEOUT
        )
        data["adapters"] = adapter_rows(listed)
    except grpc.RpcError as exc:
        data["adapters"] = {"error": f"{exc.code().name}: {exc.details()}"}
    try:
        jobs = sync_pb2_grpc.SyncServiceStub(channel).List(
            sync_pb2.SyncServiceListRequest(
                states=[sync_pb2.SYNC_JOB_STATE_RUNNING, sync_pb2.SYNC_JOB_STATE_PENDING]
            ),
            timeout=TIMEOUT,
        )
        data["sync_jobs"] = json.loads(answer_json(jobs)).get("jobs", [])
    except grpc.RpcError as exc:
        data["sync_jobs"] = {"error": f"{exc.code().name}: {exc.details()}"}
    return data


def _adapters(channel: grpc.Channel, console: Console) -> None:
    try:
        answer = adapters_pb2_grpc.AdapterRegistryStub(channel).List(
            adapters_pb2.ListRequest(), timeout=TIMEOUT
        )
    except grpc.RpcError as exc:
        console.print(f"adapters: cannot list ({exc.code().name}: {exc.details()})")
        return
    table = Table(
        id_column("adapter", [info.spec.adapter_id for info in answer.adapters]),
        "kind",
        "circuit",
        "alive",
        "last success",
        Column("last error", overflow="fold"),
        title="adapters",
    )
    for info in answer.adapters:
        table.add_row(
            info.spec.adapter_id,
            _name(adapters_pb2.AdapterKind, info.spec.kind, "ADAPTER_KIND_").lower(),
            _name(adapters_pb2.CircuitState, info.health.circuit_state, "CIRCUIT_STATE_"),
            "yes" if info.health.alive else "DOWN",
            _when(info.health, "last_success_at"),
            info.health.last_error or "-",
        )
    console.print(table)


def _sync_jobs(channel: grpc.Channel, console: Console) -> None:
    try:
        answer = sync_pb2_grpc.SyncServiceStub(channel).List(
            sync_pb2.SyncServiceListRequest(
                states=[sync_pb2.SYNC_JOB_STATE_RUNNING, sync_pb2.SYNC_JOB_STATE_PENDING]
            ),
            timeout=TIMEOUT,
        )
    except grpc.RpcError as exc:
        console.print(f"sync jobs: cannot list ({exc.code().name}: {exc.details()})")
        return
    if not answer.jobs:
        console.print("sync jobs: none running")
        return
    table = Table(
        "job", "adapter", "mode", "state", "records", "rate/s", "worker", title="sync jobs"
    )
    for job in answer.jobs:
        table.add_row(
            job.job_id,
            job.adapter_id,
            _name(sync_pb2.SyncMode, job.mode, "SYNC_MODE_"),
            _name(sync_pb2.SyncJobState, job.state, "SYNC_JOB_STATE_"),
            str(job.progress.records_seen),
            f"{job.progress.records_per_second:,.0f}",
            job.worker,
        )
    console.print(table)


def _keys(channel: grpc.Channel, console: Console) -> None:
    try:
        answer = verification_pb2_grpc.VerificationServiceStub(channel).GetTrustBundle(
            verification_pb2.GetTrustBundleRequest(), timeout=TIMEOUT
        )
        # Only reading what the bundle lists here; `tongban verify` checks its signature.
        bundle = json.loads(parse_compact(answer.trust_bundle, typ=TYP_TRUST_BUNDLE).payload)
    except (grpc.RpcError, ValueError, TongbanError) as exc:
        detail = exc.code().name if isinstance(exc, grpc.RpcError) else str(exc)
        console.print(f"signing keys: cannot read the trust bundle ({detail})")
        return
    table = Table("kid", "issuer", "status", "since", "until", title="issuer keys")
    for key in bundle.get("keys", []):
        table.add_row(
            str(key.get("kid", ""))[:16],
            f"{key.get('tongban_issuer_department', '')} {key.get('tongban_issuer', '')}",
            str(key.get("tongban_status", "")),
            str(key.get("tongban_not_before", "-")),
            str(key.get("tongban_not_after", "-")),
        )
    console.print(table)
    console.print(f"trust bundle next update: {_when(answer, 'next_update')}")
