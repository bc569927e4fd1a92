"""`tongban adapters`: list, register and remove a hub's department adapters."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import struct_pb2
from rich.console import Console
from rich.table import Column, Table

from domain.errors import ConfigError
from exchange.cli.client import (
    DevTokenOption,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
)
from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2

app = typer.Typer(help="List, register and remove department adapters.", no_args_is_help=True)

_KINDS = {
    "grpc": adapters_pb2.ADAPTER_KIND_GRPC,
    "sql": adapters_pb2.ADAPTER_KIND_SQL,
    "http": adapters_pb2.ADAPTER_KIND_HTTP,
    "file": adapters_pb2.ADAPTER_KIND_FILE,
    "python": adapters_pb2.ADAPTER_KIND_PYTHON,
}


def _call(connection: HubConnection, method: str, request: Any) -> Any:
    return connection.call(adapters_pb2_grpc.AdapterRegistryStub, method, request, timeout=10)


def spec_from_declaration(declaration: dict[str, Any]) -> adapters_pb2.AdapterSpec:
    """An `AdapterSpec` from a TOML declaration shaped like a config ``[[adapters]]`` entry.

    Raises `ConfigError` for an unknown kind or key kind; the hub validates the rest.
    """
    kind = declaration.get("kind", "")
    if kind not in _KINDS:
        raise ConfigError("kind", f"must be one of {', '.join(_KINDS)}, got {kind!r}")
    spec = adapters_pb2.AdapterSpec(
        adapter_id=str(declaration.get("id", "")),
        department=str(declaration.get("department", "")),
        department_uscc=str(declaration.get("department_uscc", "")),
        kind=_KINDS[kind],
        max_concurrency=int(declaration.get("max_concurrency", 0)),
    )
    for binding in declaration.get("serves", []):
        try:
            key_kinds = [common_pb2.KeyKind.Value(f"KEY_KIND_{k}") for k in binding["key_kinds"]]
        except ValueError as exc:
            raise ConfigError("serves.key_kinds", str(exc)) from exc
        spec.serves.add(record_type=binding.get("record_type", ""), key_kinds=key_kinds)
    options = struct_pb2.Struct()
    options.update(declaration.get("options", {}))
    spec.settings.CopyFrom(options)
    for jwk in declaration.get("department_keys", []):
        key = spec.department_keys.add()
        key.update(jwk)
    if "timeout_seconds" in declaration:
        spec.timeout.FromNanoseconds(int(float(declaration["timeout_seconds"]) * 1e9))
    if "heartbeat_seconds" in declaration:
        spec.heartbeat_interval.FromNanoseconds(int(float(declaration["heartbeat_seconds"]) * 1e9))
    return spec


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def adapter_rows(answer: adapters_pb2.ListResponse) -> list[dict[str, Any]]:
    """Each adapter as plain data (no options: they may hold credentials)."""
    rows = []
    for info in answer.adapters:
        health = info.health
        rows.append(
            {
                "id": info.spec.adapter_id,
                "kind": adapters_pb2.AdapterKind.Name(info.spec.kind)
                .removeprefix("ADAPTER_KIND_")
                .lower(),
                "department": info.spec.department,
                "origin": adapters_pb2.AdapterOrigin.Name(info.origin)
                .removeprefix("ADAPTER_ORIGIN_")
                .lower(),
                "circuit": adapters_pb2.CircuitState.Name(health.circuit_state).removeprefix(
                    "CIRCUIT_STATE_"
                ),
                "alive": health.alive,
                "last_success": health.last_success_at.ToDatetime().isoformat(timespec="seconds")
                if health.HasField("last_success_at")
                else None,
                "last_error": health.last_error or None,
            }
        )
    return rows


def id_column(header: str, ids: list[str]) -> Column:
    """A column of adapter ids, never cut short, even in an 80-column pipe."""
    return Column(header, no_wrap=True, min_width=max([len(header), *map(len, ids)]))


@app.command("list")
def list_adapters(
    hub: HubOption = "127.0.0.1:50051",
    as_json: JsonOption = False,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List adapters with their kind, origin, circuit state and last success."""
    answer = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key), "List", adapters_pb2.ListRequest()
    )
    rows = adapter_rows(answer)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(
        id_column("id", [row["id"] for row in rows]),
        "kind",
        Column("department", overflow="fold"),
        "origin",
        "circuit",
        "alive",
        "last success",
        Column("last error", overflow="fold"),
    )
    for row in rows:
        table.add_row(
            row["id"],
            row["kind"],
            row["department"],
            row["origin"],
            row["circuit"],
            "yes" if row["alive"] else "DOWN",
            row["last_success"] or "-",
            row["last_error"] or "-",
        )
    Console().print(table)


@app.command("register")
def register(
    file: Annotated[
        Path,
        typer.Argument(
            help="TOML file declaring one adapter: one \\[\\[adapters]] entry as in the "
            "configuration, or the same keys at the top level."
        ),
    ],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Register (or replace) an adapter at run time; the registration persists."""
    try:
        declaration = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(file), f"cannot read the declaration: {exc}") from exc
    entries = declaration.get("adapters")
    if isinstance(entries, list):
        if len(entries) != 1 or len(declaration) != 1:
            raise ConfigError(str(file), "declare exactly one [[adapters]] entry and nothing else")
        declaration = entries[0]
    answer = _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "Register",
        adapters_pb2.RegisterRequest(spec=spec_from_declaration(declaration)),
    )
    typer.echo(f"registered {answer.adapter.spec.adapter_id}")


@app.command("remove")
def remove(
    adapter_id: Annotated[str, typer.Argument(help="The adapter's id.")],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Remove a run-time registration; records it already delivered stay in the store."""
    _call(
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        "Deregister",
        adapters_pb2.DeregisterRequest(adapter_id=adapter_id),
    )
    typer.echo(f"removed {adapter_id}")
