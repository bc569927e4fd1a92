"""`tongban lookup`: the exchange client a hall platform or an operator runs."""

from __future__ import annotations

from typing import Annotated

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from exchange.errors import TongbanError
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.subjects import KeyKind

HubOption = Annotated[
    str, typer.Option("--hub", envvar="TONGBAN_HUB", help="The hub's gRPC address HOST:PORT.")
]


class HubCallError(TongbanError):
    """The hub answered a call with an error status."""


def lookup(
    kind: Annotated[KeyKind, typer.Argument(help="Key kind.", case_sensitive=False)],
    value: Annotated[str, typer.Argument(help="The subject's key.")],
    case: Annotated[str, typer.Option("--case", help="Case id this lookup serves.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the data is needed.")],
    types: Annotated[
        list[str] | None, typer.Option("--types", "-t", help="Record types (repeatable).")
    ] = None,
    hub: HubOption = "127.0.0.1:50051",
    deadline: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw answer as JSON.")] = False,
) -> None:
    """Look up everything the hub's sources hold about one subject."""
    request = exchange_pb2.LookupRequest(
        subject=common_pb2.SubjectKey(
            kind=common_pb2.KeyKind.Value(f"KEY_KIND_{kind.value}"), value=value
        ),
        record_types=types or [],
        purpose=common_pb2.Purpose(case_id=case, reason=reason),
    )
    with grpc.insecure_channel(hub) as channel:
        try:
            response = exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
                request, timeout=deadline
            )
        except grpc.RpcError as exc:
            raise HubCallError(f"{exc.code().name}: {exc.details()}") from exc
    if as_json:
        typer.echo(json_format.MessageToJson(response, ensure_ascii=False))
        return
    print_lookup(response, Console())


def _readable(value: object) -> str:
    # protobuf Struct carries every number as a double.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def print_lookup(response: exchange_pb2.LookupResponse, console: Console) -> None:
    """Print a lookup answer as a person reads it: sources first, then records."""
    subject = response.subject
    kind = common_pb2.KeyKind.Name(subject.kind).removeprefix("KEY_KIND_")
    console.print(f"[bold]{kind} {subject.value}[/]  request {response.request_id}")
    sources = Table("source", "status", "ms", "records", "detail", title="sources consulted")
    for status in response.sources:
        outcome = common_pb2.SourceOutcome.Name(status.outcome).removeprefix("SOURCE_OUTCOME_")
        millis = status.latency.ToTimedelta().total_seconds() * 1000
        sources.add_row(
            status.adapter_id, outcome, f"{millis:.1f}", str(status.record_count), status.detail
        )
    console.print(sources)
    for record in response.records:
        fields = json_format.MessageToDict(record.fields)
        table = Table(
            "field", "value", title=f"{record.record_type}  (from {record.provenance.department})"
        )
        for name, field_value in fields.items():
            table.add_row(name, _readable(field_value))
        console.print(table)
    if response.partial:
        console.print("[yellow]partial answer: not every source answered[/]")
