"""`tongban catalog` and `tongban access`: the sharing catalogue, and applications for
conditionally shared record types (apply, list, decide, withdraw, revoke)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from domain.errors import ConfigError
from exchange.cli.client import (
    DevTokenOption,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
)
from exchange.generated import (
    access_pb2,
    access_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
)

catalog_app = typer.Typer(
    help="The sharing catalogue: what record types exist, who owns them, how to get them.",
    no_args_is_help=True,
)
access_app = typer.Typer(
    help="Applications for conditionally shared record types, and the grants they become.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
_CLASS_NAMES = ("UNCONDITIONAL", "CONDITIONAL", "NOT_SHARED")
_STATE_NAMES = ("PENDING", "APPROVED", "REJECTED", "WITHDRAWN", "EXPIRED", "REVOKED")


def _connection(
    hub: str, dev_token: str | None, tls_ca: Any, tls_cert: Any, tls_key: Any
) -> HubConnection:
    return HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)


def _class_name(number: Any) -> str:
    return catalog_pb2.SharingClass.Name(number).removeprefix("SHARING_CLASS_")


def _state_name(number: Any) -> str:
    return access_pb2.ApplicationState.Name(number).removeprefix("APPLICATION_STATE_")


def _echo_json(message: Any) -> None:
    typer.echo(json_format.MessageToJson(message, ensure_ascii=False))


@catalog_app.command("list")
def catalog_list(
    sharing: Annotated[
        str | None, typer.Option(help="Only this class: UNCONDITIONAL, CONDITIONAL, NOT_SHARED.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only entries this USCC owns.")] = None,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List the catalogue's entries: record type, owner, sharing class, how to access."""
    request = catalog_pb2.CatalogServiceListRequest(owner_uscc=owner or "")
    if sharing is not None:
        if sharing.upper() not in _CLASS_NAMES:
            raise ConfigError("--sharing", f"must be one of {', '.join(_CLASS_NAMES)}")
        request.sharing = catalog_pb2.SharingClass.Value(f"SHARING_CLASS_{sharing.upper()}")
    answer = _connection(hub, dev_token, tls_ca, tls_cert, tls_key).call(
        catalog_pb2_grpc.CatalogServiceStub, "List", request
    )
    if as_json:
        _echo_json(answer)
        return
    table = Table("record type", "catalogue id", "owner", "sharing", "served by")
    for entry in answer.entries:
        table.add_row(
            entry.record_type,
            entry.catalogue_id,
            entry.owner_department or "-",
            _class_name(entry.sharing),
            ", ".join(entry.adapter_ids) or "-",
        )
    Console().print(table)


@catalog_app.command("show")
def catalog_show(
    record_type: Annotated[str, typer.Argument(help="A record type or catalogue id.")],
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Show one entry: its terms, fields with their classes, and how to get access."""
    answer = _connection(hub, dev_token, tls_ca, tls_cert, tls_key).call(
        catalog_pb2_grpc.CatalogServiceStub,
        "Get",
        catalog_pb2.CatalogServiceGetRequest(record_type=record_type),
    )
    if as_json:
        _echo_json(answer)
        return
    entry = answer.entry
    console = Console()
    console.print(f"[bold]{entry.record_type}[/]  catalogue entry {entry.catalogue_id}")
    kinds = ", ".join(common_pb2.KeyKind.Name(k).removeprefix("KEY_KIND_") for k in entry.key_kinds)
    for label, value in (
        ("description", entry.description),
        ("owner", f"{entry.owner_department} ({entry.owner_uscc})" if entry.owner_uscc else ""),
        ("sharing", _class_name(entry.sharing)),
        ("found by", kinds),
        ("updated", entry.update_frequency),
        ("legal basis", entry.legal_basis),
        ("providers", ", ".join(entry.providers)),
        ("served by", ", ".join(entry.adapter_ids)),
        ("access", entry.how_to_access),
    ):
        console.print(f"{label:>12}: {value or '-'}")
    table = Table("field", "type", "sharing")
    for item in entry.fields:
        table.add_row(item.name, item.type or "-", _class_name(item.sharing))
    console.print(table)


def _parse_fields(
    record_types: list[str], fields: list[str]
) -> list[access_pb2.RequestedRecordType]:
    """``--field TYPE:NAME`` (or ``NAME`` when one record type is named) per type."""
    chosen: dict[str, list[str]] = {t: [] for t in record_types}
    for item in fields:
        record_type, _, name = item.rpartition(":")
        if not record_type:
            if len(record_types) != 1:
                raise ConfigError("--field", f"write TYPE:FIELD when naming several types: {item}")
            record_type = record_types[0]
        if record_type not in chosen:
            raise ConfigError("--field", f"{record_type} is not among the record types named")
        chosen[record_type].append(name)
    return [access_pb2.RequestedRecordType(record_type=t, fields=f) for t, f in chosen.items()]


def _utc(stamp: Any) -> str:
    return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M"))


def _print_applications(applications: Any) -> None:
    table = Table()
    for title in ("id", "state", "applicant", "record types (fields)", "until (UTC)", "note"):
        table.add_column(title, overflow="fold")
    for a in applications:
        shown = a.granted if a.state == access_pb2.APPLICATION_STATE_APPROVED else a.requested
        types = "\n".join(f"{r.record_type} ({', '.join(r.fields) or 'all'})" for r in shown)
        if a.state == access_pb2.APPLICATION_STATE_PENDING:
            until = _utc(a.decide_by) + " (decide by)"
        elif a.HasField("grant_expires_at") and a.state == access_pb2.APPLICATION_STATE_APPROVED:
            until = _utc(a.grant_expires_at)
        else:
            until = "-"
        note = a.end_reason or a.decision_reason or "; ".join(a.purposes)
        table.add_row(a.application_id, _state_name(a.state), a.applicant, types, until, note)
    Console().print(table)


def _access_call(
    hub: str, dev_token: str | None, tls: tuple[Any, Any, Any], method: str, request: Any
) -> Any:
    return _connection(hub, dev_token, *tls).call(
        access_pb2_grpc.AccessServiceStub, method, request
    )


@access_app.command("apply")
def access_apply(
    record_types: Annotated[list[str], typer.Argument(help="Record types of one owner.")],
    purpose: Annotated[list[str], typer.Option("--purpose", help="Why (事由); repeatable.")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="A field wanted, TYPE:FIELD or FIELD; none: all."),
    ] = None,
    legal_basis: Annotated[str, typer.Option(help="The legal basis of the request.")] = "",
    days: Annotated[int, typer.Option(help="Requested duration in days (0: default).")] = 0,
    contact: Annotated[str, typer.Option(help="Who to ask about the application.")] = "",
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Apply to the owning department for conditionally shared record types."""
    request = access_pb2.AccessServiceApplyRequest(
        record_types=_parse_fields(record_types, field or []),
        purposes=purpose,
        legal_basis=legal_basis,
        duration_days=days,
        contact=contact,
    )
    answer = _access_call(hub, dev_token, (tls_ca, tls_cert, tls_key), "Apply", request)
    if as_json:
        _echo_json(answer)
        return
    a = answer.application
    typer.echo(
        f"application {a.application_id} PENDING with {a.owner_department or a.owner_uscc}; "
        f"to be decided by {_utc(a.decide_by)} UTC, or it expires"
    )


@access_app.command("list")
def access_list(
    role: Annotated[
        str, typer.Option(help="'applicant' (mine), 'owner' (addressed to me) or 'any'.")
    ] = "any",
    state: Annotated[list[str] | None, typer.Option("--state", help="Only this state.")] = None,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List applications: those you made and those addressed to your department."""
    roles = {
        "any": access_pb2.LIST_ROLE_UNSPECIFIED,
        "applicant": access_pb2.LIST_ROLE_APPLICANT,
        "owner": access_pb2.LIST_ROLE_OWNER,
    }
    if role not in roles:
        raise ConfigError("--role", "must be any, applicant or owner")
    states = []
    for name in state or []:
        if name.upper() not in _STATE_NAMES:
            raise ConfigError("--state", f"must be one of {', '.join(_STATE_NAMES)}")
        states.append(access_pb2.ApplicationState.Value(f"APPLICATION_STATE_{name.upper()}"))
    request = access_pb2.AccessServiceListRequest(role=roles[role], states=states)
    answer = _access_call(hub, dev_token, (tls_ca, tls_cert, tls_key), "List", request)
    if as_json:
        _echo_json(answer)
        return
    _print_applications(answer.applications)


@access_app.command("decide")
def access_decide(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    approve: Annotated[bool, typer.Option("--approve/--reject", help="The decision.")],
    reason: Annotated[str, typer.Option(help="Why (required to reject).")] = "",
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="Grant only these fields, TYPE:FIELD; none: as asked."),
    ] = None,
    days: Annotated[int, typer.Option(help="Grant fewer days than asked (0: as asked).")] = 0,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Approve (possibly narrower) or reject an application addressed to your department."""
    granted: list[access_pb2.RequestedRecordType] = []
    if field:
        types = list(dict.fromkeys(item.rpartition(":")[0] for item in field))
        if "" in types:
            raise ConfigError("--field", "write TYPE:FIELD")
        granted = _parse_fields(types, field)
    request = access_pb2.AccessServiceDecideRequest(
        application_id=application_id,
        decision=access_pb2.DECISION_APPROVE if approve else access_pb2.DECISION_REJECT,
        reason=reason,
        granted=granted,
        duration_days=days,
    )
    answer = _access_call(hub, dev_token, (tls_ca, tls_cert, tls_key), "Decide", request)
    if as_json:
        _echo_json(answer)
        return
    _print_applications([answer.application])


@access_app.command("withdraw")
def access_withdraw(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Withdraw your pending application, or give up the grant it became."""
    request = access_pb2.AccessServiceWithdrawRequest(application_id=application_id, reason=reason)
    answer = _access_call(hub, dev_token, (tls_ca, tls_cert, tls_key), "Withdraw", request)
    typer.echo(f"application {answer.application.application_id} WITHDRAWN")


@access_app.command("revoke")
def access_revoke(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    reason: Annotated[str, typer.Option(help="Why (required).")],
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Revoke a grant your department gave; it ends on every node within seconds."""
    request = access_pb2.AccessServiceRevokeRequest(application_id=application_id, reason=reason)
    answer = _access_call(hub, dev_token, (tls_ca, tls_cert, tls_key), "Revoke", request)
    typer.echo(f"application {answer.application.application_id} REVOKED")
