"""How CLI commands reach a hub (address, mTLS client certificate, dev token), and
`tongban lookup`: the exchange client a hall platform or an operator runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from domain.errors import ConfigError, TongbanError
from domain.subjects import KeyKind
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc

CALL_SECONDS = 15.0
MAX_DEADLINE_SECONDS = 600

if TYPE_CHECKING:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor

DEFAULT_HUB_PORT = 50051
"""The port `server.listen` uses by default; a --hub without one dials it."""

HubOption = Annotated[
    str,
    typer.Option(
        "--hub",
        envvar="TONGBAN_HUB",
        help=f"The hub's gRPC address HOST:PORT (HOST alone: port {DEFAULT_HUB_PORT}).",
    ),
]


def hub_target(address: str) -> str:
    """`address` as HOST:PORT: a bare host (or IPv6 address) gets the hub's default port.

    Raises `ConfigError` naming --hub when it is empty or its port is no port.
    """
    address = address.strip()
    if address.count(":") > 1 and not address.startswith("["):
        address = f"[{address}]"  # a bare IPv6 address
    host, colon, port = address.rpartition(":")
    if not colon or (host.startswith("[") and not host.endswith("]")) or address.endswith("]"):
        host, port = address, ""
    if not host:
        raise ConfigError("--hub", "must be HOST:PORT or HOST")
    if not port:
        return f"{host}:{DEFAULT_HUB_PORT}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("--hub", f"the port must be a number in 1..65535, got {port!r}")
    return f"{host}:{port}"


DevTokenOption = Annotated[
    str | None,
    typer.Option(
        "--dev-token",
        envvar="TONGBAN_DEV_TOKEN",
        help="Dev mode: act as the caller this token names (tongban ca dev-token).",
    ),
]
TlsCaOption = Annotated[
    Path | None,
    typer.Option("--tls-ca", envvar="TONGBAN_TLS_CA", help="mTLS: the CA that signed the hub."),
]
TlsCertOption = Annotated[
    Path | None,
    typer.Option("--tls-cert", envvar="TONGBAN_TLS_CERT", help="mTLS: this client's certificate."),
]
TlsKeyOption = Annotated[
    Path | None,
    typer.Option("--tls-key", envvar="TONGBAN_TLS_KEY", help="mTLS: this client's private key."),
]


class HubCallError(TongbanError):
    """The hub answered a call with an error status."""


@dataclass(frozen=True)
class HubConnection:
    """Where the hub is and how to call it (plaintext dev mode, or mTLS)."""

    address: str
    dev_token: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def channel(self) -> grpc.Channel:
        """A channel to the hub; every call on it carries the dev token, if any.

        Raises:
            ConfigError: a TLS file cannot be read.
        """
        target = hub_target(self.address)
        if self.tls_ca is None:
            channel = grpc.insecure_channel(target)
        else:
            try:
                root = self.tls_ca.read_bytes()
                key = self.tls_key.read_bytes() if self.tls_key else None
                chain = self.tls_cert.read_bytes() if self.tls_cert else None
            except OSError as exc:
                raise ConfigError("--tls-*", f"cannot read a TLS file: {exc}") from exc
            credentials = grpc.ssl_channel_credentials(root, key, chain)
            channel = grpc.secure_channel(target, credentials)
        if self.dev_token:
            return grpc.intercept_channel(channel, _Bearer(self.dev_token))
        return channel

    def call(self, stub_type: Any, method: str, request: Any, timeout: float = CALL_SECONDS) -> Any:
        """One unary call.

        Raises:
            HubCallError: the hub answered with an error status (code and details).
        """
        with self.channel() as channel:
            try:
                return getattr(stub_type(channel), method)(request, timeout=timeout)
            except grpc.RpcError as exc:
                raise HubCallError(f"{exc.code().name}: {exc.details()}") from exc


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _Bearer(_UnaryUnary, _UnaryStream):
    """Adds ``authorization: Bearer <dev token>`` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = (*(details.metadata or ()), self._header)
        return _CallDetails(  # type: ignore[return-value]
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


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
    receipt: Annotated[
        Path | None,
        typer.Option("--receipt", help="Save the hub's signed receipt for this answer here."),
    ] = None,
    answer_file: Annotated[
        Path | None,
        typer.Option("--answer", help="Save the answer as JSON here (for `receipt verify`)."),
    ] = None,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Look up everything the hub's sources hold about one subject."""
    if not 0 < deadline <= MAX_DEADLINE_SECONDS:
        raise ConfigError(
            "--deadline", f"must be more than 0 and at most {MAX_DEADLINE_SECONDS} seconds"
        )
    request = exchange_pb2.LookupRequest(
        subject=common_pb2.SubjectKey(
            kind=common_pb2.KeyKind.Value(f"KEY_KIND_{kind.value}"), value=value
        ),
        record_types=types or [],
        purpose=common_pb2.Purpose(case_id=case, reason=reason),
    )
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    response = connection.call(exchange_pb2_grpc.ExchangeServiceStub, "Lookup", request, deadline)
    if receipt is not None:
        if not response.receipt:
            raise TongbanError("the hub sent no receipt (it holds no root key to sign one)")
        _write_new(receipt, response.receipt + "\n", "--receipt")
    if answer_file is not None:
        _write_new(answer_file, json_format.MessageToJson(response, ensure_ascii=False), "--answer")
    if as_json:
        typer.echo(answer_json(response))
        return
    print_lookup(response, Console())
    if not response.sources:
        raise TongbanError(
            f"no source serves {kind.value} keys"
            + (f" for {', '.join(types)}" if types else "")
            + ": nothing was asked (`tongban adapters list` shows what each serves)"
        )


def answer_json(message: Any) -> str:
    """`message` as proto3 JSON, with integral numbers as integers: a protobuf Struct holds
    every number as a double, and 1000000 must not print as 1000000.0."""
    return json.dumps(_integral(json_format.MessageToDict(message)), ensure_ascii=False, indent=2)


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {name: _integral(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _write_new(path: Path, text: str, option: str) -> None:
    """Write a file that must not exist yet. Raises `ConfigError` naming `option`."""
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ConfigError(option, f"cannot write {path}: {exc.strerror or exc}") from exc


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
        # The record's own key first: a title is found by its certificate number, say.
        own = common_pb2.KeyKind.Name(record.subject.kind).removeprefix("KEY_KIND_")
        table.add_row(f"[dim]{own}[/]", record.subject.value)
        # In the record type's declared order, as the hub gives it (a Struct has none).
        order = [name for name in record.field_order if name in fields]
        order += sorted(name for name in fields if name not in set(order))
        for name in order:
            table.add_row(name, _readable(fields[name]))
        console.print(table)
    if response.partial:
        console.print("[yellow]partial answer: not every source answered[/]")


def lookup_batch(
    subjects_file: Annotated[
        Path,
        typer.Argument(
            help="One subject a line, KIND VALUE (ID_CARD 11010519491231002X); # comments."
        ),
    ],
    case: Annotated[str, typer.Option("--case", help="Case id these lookups serve.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the data is needed.")],
    types: Annotated[
        list[str] | None, typer.Option("--types", "-t", help="Record types (repeatable).")
    ] = None,
    hub: HubOption = "127.0.0.1:50051",
    deadline: Annotated[float, typer.Option(help="Seconds for the whole batch.")] = 60.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON answer a line, in the hub's order.")
    ] = False,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Look up many subjects in one call (ExchangeService.BatchLookup, streamed back)."""
    if not 0 < deadline <= MAX_DEADLINE_SECONDS:
        raise ConfigError(
            "--deadline", f"must be more than 0 and at most {MAX_DEADLINE_SECONDS} seconds"
        )
    subjects = _read_subjects(subjects_file)
    request = exchange_pb2.BatchLookupRequest(
        subjects=subjects,
        record_types=types or [],
        purpose=common_pb2.Purpose(case_id=case, reason=reason),
    )
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    table = Table("#", "subject", "outcome", "records", "sources")
    failed = 0
    with connection.channel() as channel:
        try:
            for answer in exchange_pb2_grpc.ExchangeServiceStub(channel).BatchLookup(
                request, timeout=deadline
            ):
                if as_json:
                    typer.echo(
                        json.dumps(_integral(json_format.MessageToDict(answer)), ensure_ascii=False)
                    )
                    continue
                kind = common_pb2.KeyKind.Name(answer.subject.kind).removeprefix("KEY_KIND_")
                if answer.HasField("error"):
                    failed += 1
                    outcome = f"{answer.error.code}: {answer.error.message}"
                    table.add_row(
                        str(answer.index), f"{kind} {answer.subject.value}", outcome, "-", "-"
                    )
                    continue
                result = answer.result
                sources = ", ".join(
                    f"{s.adapter_id} "
                    + common_pb2.SourceOutcome.Name(s.outcome).removeprefix("SOURCE_OUTCOME_")
                    for s in result.sources
                )
                table.add_row(
                    str(answer.index),
                    f"{kind} {answer.subject.value}",
                    "partial" if result.partial else "complete",
                    str(len(result.records)),
                    sources or "no source serves this key kind",
                )
        except grpc.RpcError as exc:
            raise HubCallError(f"{exc.code().name}: {exc.details()}") from exc
    if not as_json:
        Console().print(table)
    if failed:
        raise typer.Exit(1)


def _read_subjects(path: Path) -> list[common_pb2.SubjectKey]:
    """Raises `ConfigError` naming SUBJECTS_FILE for an unreadable file or a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("SUBJECTS_FILE", f"cannot read {path}: {exc}") from exc
    subjects = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        kind, _, value = text.partition(" ")
        try:
            key_kind = KeyKind(kind.upper())
        except ValueError:
            raise ConfigError(
                "SUBJECTS_FILE",
                f"line {number}: {kind!r} is no key kind (one of "
                f"{', '.join(k.value for k in KeyKind)})",
            ) from None
        subjects.append(
            common_pb2.SubjectKey(
                kind=common_pb2.KeyKind.Value(f"KEY_KIND_{key_kind.value}"), value=value.strip()
            )
        )
    if not subjects:
        raise ConfigError("SUBJECTS_FILE", f"{path} names no subject")
    return subjects
