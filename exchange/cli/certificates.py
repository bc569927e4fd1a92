"""`tongban cert`, `tongban trust` and `tongban verify`: e-certificates from the command line.

`cert` and `trust` talk to a hub over gRPC. `verify` works offline, with the trust
bundle, status list and root key that `trust export` wrote (or online with `--hub`),
prints every check, and exits 0 only when every check passed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import segno
import typer
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from rich.console import Console
from rich.table import Column, Table

from domain.errors import ConfigError, InvalidRequest, TongbanError
from exchange.cli.client import (
    DevTokenOption,
    HubConnection,
    HubOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
)
from exchange.cli.copy_check import (
    print_copy,
    print_copy_answer,
    read_document,
    verify_copy_offline,
)
from exchange.cli.server import ConfigOption, _settings
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    verification_pb2,
    verification_pb2_grpc,
)
from signing import (
    QR_MAX_TOKEN_LENGTH,
    TYP_CERTIFICATE,
    CheckName,
    CheckResult,
    DocumentExpired,
    QrReference,
    QrToken,
    StatusList,
    SuiteResult,
    TrustBundle,
    Verifier,
    parse_certificate_id,
    parse_compact,
    parse_qr_text,
    qr_payload,
)
from signing.timestamps import parse_rfc3339
from signing.usage_copy import is_usage_copy

cert_app = typer.Typer(help="Issue and manage e-certificates.", no_args_is_help=True)
trust_app = typer.Typer(
    help="Export the trust bundle for offline verification.", no_args_is_help=True
)

BUNDLE_FILE = "trust-bundle.jws"
STATUS_FILE = "status-list.jws"
ROOT_FILE = "root.jwk.json"
DEPARTMENT_KEYS_FILE = "department-keys.jws"
JWKS_FILE = "jwks.json"
DEFAULT_TRUST_DIR = Path("trust")

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the certificate).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]


# --- reading arguments ----------------------------------------------------------------


def parse_holder(text: str) -> common_pb2.SubjectKey:
    """``KIND:VALUE`` (``USCC:91350100M000100Y43``) as a protobuf subject key.

    Raises:
        InvalidRequest: not KIND:VALUE with a known kind.
    """
    kind, separator, value = text.partition(":")
    name = f"KEY_KIND_{kind.upper()}"
    if not separator or name not in common_pb2.KeyKind.keys()[1:]:
        names = [n.removeprefix("KEY_KIND_") for n in common_pb2.KeyKind.keys()[1:]]
        raise InvalidRequest("--holder", f"write KIND:VALUE with KIND one of {', '.join(names)}")
    return common_pb2.SubjectKey(kind=common_pb2.KeyKind.Value(name), value=value)


def parse_fields(pairs: list[str], json_file: Path | None) -> struct_pb2.Struct:
    """Fields from ``name=text`` (a string) and ``name:=json`` (any JSON value) pairs,
    over those of a JSON file.

    Raises:
        InvalidRequest: a pair is malformed or its JSON does not parse.
        ConfigError: the file cannot be read or is not a JSON object.
    """
    fields: dict[str, Any] = {}
    if json_file is not None:
        try:
            loaded = json.loads(json_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError("--fields-json", f"cannot read {json_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError("--fields-json", "must hold a JSON object")
        fields.update(loaded)
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise InvalidRequest("--field", f"{pair!r}: write name=text or name:=json")
        if name.endswith(":"):
            try:
                fields[name[:-1]] = json.loads(value)
            except ValueError as exc:
                raise InvalidRequest("--field", f"{pair!r}: the value is not JSON") from exc
        else:
            fields[name] = value
    message = struct_pb2.Struct()
    message.update(fields)
    return message


def _time_option(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text, option)
    except InvalidRequest:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidRequest(option, "write a time like 2026-01-31T08:00:00Z") from exc
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    return None if moment is None else timestamp_pb2.Timestamp(seconds=int(moment.timestamp()))


# --- printing -------------------------------------------------------------------------


def _status_name(number: certificates_pb2.CertificateStatus.ValueType) -> str:
    return certificates_pb2.CertificateStatus.Name(number).removeprefix("CERTIFICATE_STATUS_")


def _readable(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


UNVERIFIED: Final = "未经验证的声明内容 / claimed, not verified"


def print_certificate(
    certificate: certificates_pb2.Certificate, console: Console, *, verified: bool = True
) -> None:
    """A certificate as a person reads it; content that did not verify says so first."""
    kind = common_pb2.KeyKind.Name(certificate.holder.kind).removeprefix("KEY_KIND_")
    title = f"{certificate.type_name}  {certificate.id}"
    if not verified:
        title = f"[bold red]{UNVERIFIED}[/]: {title}"
    table = Table(show_header=False, title=title)
    table.add_row("holder", f"{kind} {certificate.holder.value}")
    table.add_row("issuer", f"{certificate.issuer.department} ({certificate.issuer.uscc})")
    table.add_row("version", str(certificate.version))
    table.add_row("issued", certificate.issued_at.ToJsonString())
    until = certificate.valid_until.ToJsonString() if certificate.HasField("valid_until") else "-"
    table.add_row("valid", f"{certificate.valid_from.ToJsonString()} .. {until}")
    if certificate.status:
        status = _status_name(certificate.status)
        if certificate.status_reason:
            status += f" ({certificate.status_reason})"
        table.add_row("status", status)
    if certificate.predecessor_id:
        table.add_row("replaces", certificate.predecessor_id)
    if certificate.successor_id:
        table.add_row("replaced by", certificate.successor_id)
    for name, value in json_format.MessageToDict(certificate.fields).items():
        table.add_row(name, _readable(value))
    console.print(table)


def _print_json(message: Any) -> None:
    typer.echo(json_format.MessageToJson(message, ensure_ascii=False))


def print_suites(suites: list[SuiteResult], console: Console) -> None:
    """Which signature suites verified (one row per token: two for dual-signed)."""
    table = Table("", Column("suite", no_wrap=True), Column("alg", no_wrap=True), "kid", "reason")
    for suite in suites:
        mark = "[green]VERIFIED[/]" if suite.valid else "[red]FAILED[/]"
        table.add_row(mark, suite.suite, suite.alg, suite.kid, "; ".join(suite.reasons))
    console.print(table)
    verified = [f"{s.suite} ({s.alg})" for s in suites if s.valid]
    console.print("suites verified: " + (", ".join(verified) if verified else "none"))


def print_checks(checks: list[CheckResult], console: Console) -> bool:
    """Every check with its outcome; True when all passed."""
    table = Table("", Column("check", no_wrap=True), "reason")
    for check in checks:
        mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(mark, check.name.value, check.reason)
    console.print(table)
    valid = bool(checks) and all(c.passed for c in checks)
    console.print("[bold green]VALID[/]" if valid else "[bold red]NOT VALID[/]")
    return valid


# --- cert -----------------------------------------------------------------------------


@cert_app.command("issue")
def issue(
    type_code: Annotated[str, typer.Argument(help="The certificate type code.")],
    holder: Annotated[str, typer.Option("--holder", help="KIND:VALUE of the holder.")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="name=text, or name:=json for numbers etc."),
    ] = None,
    fields_json: Annotated[
        Path | None, typer.Option("--fields-json", help="A JSON object of fields.")
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option("--request-id", help="Idempotency key; a retry with it issues nothing new."),
    ] = None,
    issuer: Annotated[
        str, typer.Option("--issuer", help="Issuer USCC (default: the type's).")
    ] = "",
    valid_from: Annotated[str | None, typer.Option(help="RFC 3339 time (default: now).")] = None,
    valid_until: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    token_out: Annotated[
        Path | None, typer.Option("--token-out", help="Also write the signed token here.")
    ] = None,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Issue (and sign) a certificate."""
    request = certificates_pb2.IssueRequest(
        request_id=request_id or uuid.uuid4().hex,
        type_code=type_code,
        holder=parse_holder(holder),
        issuer_uscc=issuer,
        fields=parse_fields(field or [], fields_json),
        valid_from=_stamp(_time_option(valid_from, "--valid-from")),
        valid_until=_stamp(_time_option(valid_until, "--valid-until")),
    )
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(certificates_pb2_grpc.CertificateServiceStub, "Issue", request)
    if token_out is not None:
        # A dual-signed certificate: both tokens, the primary first, one per line.
        tokens = [answer.certificate.token, answer.certificate.second_token]
        token_out.write_text("\n".join(filter(None, tokens)) + "\n", encoding="ascii")
    if as_json:
        _print_json(answer)
        return
    print_certificate(answer.certificate, Console())
    note = " (a retry: issued before)" if answer.replayed else ""
    # Plain, unwrapped: scripts read the id from this last line.
    typer.echo(f"issued {answer.certificate.id}{note}")


@cert_app.command("show")
def show(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    token_only: Annotated[bool, typer.Option("--token", help="Print only the token.")] = False,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Show a certificate with its status."""
    parse_certificate_id(certificate_id)
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(
        certificates_pb2_grpc.CertificateServiceStub,
        "Get",
        certificates_pb2.GetRequest(certificate_id=certificate_id),
    )
    if token_only:
        typer.echo(answer.certificate.token)
        if answer.certificate.second_token:
            typer.echo(answer.certificate.second_token)
    elif as_json:
        _print_json(answer.certificate)
    else:
        print_certificate(answer.certificate, Console())


@cert_app.command("list")
def list_certificates(
    holder: Annotated[str, typer.Argument(help="KIND:VALUE of the holder.")],
    type_code: Annotated[str, typer.Option("--type", help="Only this type.")] = "",
    include_inactive: Annotated[
        bool, typer.Option("--all", help="Also revoked and superseded ones.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 200,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """List a holder's certificates, newest first."""
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    # The id is what people copy from here: wrap it, never cut it short.
    table = Table(Column("id", overflow="fold"), "type", "version", "issued", "status")
    token, shown = "", 0
    while shown < limit:
        answer = connection.call(
            certificates_pb2_grpc.CertificateServiceStub,
            "ListByHolder",
            certificates_pb2.ListByHolderRequest(
                holder=parse_holder(holder),
                type_code=type_code,
                include_inactive=include_inactive,
                page_size=min(200, limit - shown),
                page_token=token,
            ),
        )
        for certificate in answer.certificates:
            table.add_row(
                certificate.id,
                certificate.type_name,
                str(certificate.version),
                certificate.issued_at.ToJsonString(),
                _status_name(certificate.status),
            )
            shown += 1
        token = answer.next_page_token
        if not token:
            break
    Console().print(table)


def _status_change(
    method: str,
    request: Any,
    connection: HubConnection,
    as_json: bool,
) -> None:
    answer = connection.call(certificates_pb2_grpc.CertificateServiceStub, method, request)
    if as_json:
        _print_json(answer.certificate)
        return
    certificate = answer.certificate
    typer.echo(
        f"{certificate.id}: {_status_name(certificate.status)} ({certificate.status_reason})"
    )


@cert_app.command("revoke")
def revoke(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    reason: ReasonOption,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Revoke a certificate for good."""
    _status_change(
        "Revoke",
        certificates_pb2.RevokeRequest(certificate_id=certificate_id, reason=reason),
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        as_json,
    )


@cert_app.command("suspend")
def suspend(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    reason: ReasonOption,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Suspend a certificate (reinstate lifts it)."""
    _status_change(
        "Suspend",
        certificates_pb2.SuspendRequest(certificate_id=certificate_id, reason=reason),
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        as_json,
    )


@cert_app.command("reinstate")
def reinstate(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (optional).")] = "",
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Lift a suspension."""
    _status_change(
        "Reinstate",
        certificates_pb2.ReinstateRequest(certificate_id=certificate_id, reason=reason),
        HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key),
        as_json,
    )


@cert_app.command("supersede")
def supersede(
    certificate_id: Annotated[str, typer.Argument(help="The certificate to replace.")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="name=text or name:=json (all fields)."),
    ] = None,
    fields_json: Annotated[
        Path | None, typer.Option("--fields-json", help="A JSON object of fields.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why.")] = "",
    request_id: Annotated[str | None, typer.Option("--request-id", help="Idempotency key.")] = None,
    valid_until: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    as_json: JsonOption = False,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Issue the next version of a certificate and mark this one superseded."""
    request = certificates_pb2.SupersedeRequest(
        certificate_id=certificate_id,
        request_id=request_id or uuid.uuid4().hex,
        fields=parse_fields(field or [], fields_json),
        reason=reason,
        valid_until=_stamp(_time_option(valid_until, "--valid-until")),
    )
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(certificates_pb2_grpc.CertificateServiceStub, "Supersede", request)
    if as_json:
        _print_json(answer)
        return
    print_certificate(answer.certificate, Console())
    typer.echo(f"{answer.predecessor.id} is superseded by {answer.certificate.id}")


@cert_app.command("qr")
def qr(
    certificate: Annotated[
        str, typer.Argument(help="A certificate id (fetched from the hub) or a token file.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where: a .png or .svg file.")],
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="TONGBAN_PUBLIC_URL",
            help="The hub's verification page, for tokens too long for a QR code "
            "(default: signing.public_url of the configuration).",
        ),
    ] = None,
    config: ConfigOption = None,
    scale: Annotated[int, typer.Option(min=1, max=40, help="Pixels per module.")] = 4,
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Write the certificate's QR code (its token, or a link when the token is too long)."""
    if out.suffix.lower() not in (".png", ".svg"):
        raise InvalidRequest("--out", "must end in .png or .svg")
    path = Path(certificate)
    if path.is_file():
        token = path.read_text(encoding="ascii").strip()
        certificate_id = _claimed_id(token)
    else:
        parse_certificate_id(certificate)
        connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
        answer = connection.call(
            certificates_pb2_grpc.CertificateServiceStub,
            "Get",
            certificates_pb2.GetRequest(certificate_id=certificate),
        )
        token, certificate_id = answer.certificate.token, answer.certificate.id
    if public_url is None and len(token) > QR_MAX_TOKEN_LENGTH:
        public_url = _settings(config).signing.public_url
    if len(token) <= QR_MAX_TOKEN_LENGTH:
        text = token
    elif public_url is None:
        raise InvalidRequest(
            "--public-url",
            "the token is too long for a QR code; give the hub URL (or set "
            "signing.public_url in the configuration)",
        )
    else:
        text = qr_payload(token, public_url, certificate_id, max_length=QR_MAX_TOKEN_LENGTH)
    code = segno.make(text, error="m", micro=False)
    code.save(str(out), scale=scale)
    what = "token" if text == token else f"link {text}"
    typer.echo(f"wrote {out} (QR version {code.version}, holds the {what})")


def _claimed_id(token: str) -> str:
    claims = parse_compact(token, typ=TYP_CERTIFICATE).claims()
    claimed = claims.get("id")
    if not isinstance(claimed, str):
        raise InvalidRequest("token", "has no certificate id")
    return claimed


# --- trust ----------------------------------------------------------------------------


@trust_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write to.")] = (
        DEFAULT_TRUST_DIR
    ),
    hub: HubOption = "127.0.0.1:50051",
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Write the signed trust bundle, the signed status list and the hub's root key.

    Also writes jwks.json, the bundle's verified key set, for stock JOSE tools.
    """
    connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
    answer = connection.call(
        verification_pb2_grpc.VerificationServiceStub,
        "GetTrustBundle",
        verification_pb2.GetTrustBundleRequest(),
    )
    root = json.loads(answer.root_public_jwk)
    bundle = TrustBundle.load(answer.trust_bundle, root, datetime.now(UTC))
    jwks = json.dumps(bundle.to_jwks(), indent=2, ensure_ascii=False, sort_keys=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / BUNDLE_FILE).write_text(answer.trust_bundle + "\n", encoding="ascii")
        (out / STATUS_FILE).write_text(answer.status_list + "\n", encoding="ascii")
        (out / ROOT_FILE).write_text(json.dumps(root, indent=2, sort_keys=True) + "\n", "ascii")
        (out / JWKS_FILE).write_text(jwks + "\n", encoding="utf-8")
        if answer.department_keys:
            (out / DEPARTMENT_KEYS_FILE).write_text(answer.department_keys + "\n", "ascii")
    except OSError as exc:
        where = exc.filename or out
        raise ConfigError(
            "--out", f"cannot write the trust files to {where}: {exc.strerror or exc}"
        ) from exc
    typer.echo(
        f"wrote {out}/{{{BUNDLE_FILE},{STATUS_FILE},{ROOT_FILE},{JWKS_FILE}}}: "
        f"{len(bundle.keys)} issuer keys; refresh after {answer.next_update.ToJsonString()}"
    )


# --- verify ---------------------------------------------------------------------------


def _read_presented(token_or_file: str) -> str:
    path = Path(token_or_file)
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    except OSError:  # a long token is not a file name
        pass
    return token_or_file.strip()


def _refuse_what_no_token_is(presented: str) -> None:
    """Raises `InvalidRequest` for a certificate id (only the hub can look one up) and
    for what looks like the name of a file that does not exist."""
    try:
        parse_certificate_id(presented)
    except InvalidRequest:
        pass
    else:
        raise InvalidRequest(
            "TOKEN", "a certificate id is verified online: add --hub HOST:PORT, or pass its token"
        )
    _refuse_a_missing_file(presented)


def _refuse_a_missing_file(presented: str) -> None:
    """Raises `InvalidRequest` ("no such file") for what names a file rather than a token
    or a certificate id, when no such file exists."""
    if "/" in presented or Path(presented).suffix.lower() in {".jws", ".jwt", ".txt", ".json"}:
        raise InvalidRequest("TOKEN", f"no such file: {presented}")


def _load_fresh_or_expired(
    load: Any, kind: str, text: str, root: dict[str, Any], now: datetime, console: Console
) -> Any:
    """The document even when expired, so the verifier's own check reports that."""
    try:
        return load(text, root, now)
    except DocumentExpired as exc:
        console.print(f"[yellow]{kind} expired at {exc.expires.isoformat()}; refresh it[/]")
        return load(text, root, exc.expires - timedelta(seconds=1))


def verify(
    token_or_file: Annotated[
        str, typer.Argument(help="A compact token, QR text, or a file holding one.")
    ],
    bundle: Annotated[
        Path, typer.Option("--bundle", help="The signed trust bundle (tongban trust export).")
    ] = DEFAULT_TRUST_DIR / BUNDLE_FILE,
    status: Annotated[
        Path, typer.Option("--status", help="The signed status list.")
    ] = DEFAULT_TRUST_DIR / STATUS_FILE,
    root: Annotated[
        Path, typer.Option("--root", help="The hub's root public key (JWK) you trust.")
    ] = DEFAULT_TRUST_DIR / ROOT_FILE,
    at: Annotated[str | None, typer.Option("--at", help="Verify as of this RFC 3339 time.")] = None,
    hub: Annotated[
        str | None,
        typer.Option("--hub", help="Verify online with this hub (HOST:PORT) instead."),
    ] = None,
    certificate_file: Annotated[
        Path | None,
        typer.Option(
            "--certificate",
            help="For a usage copy given as a token: the certificate's token file "
            "(a PDF carries it already; online the hub has it).",
        ),
    ] = None,
    dev_token: DevTokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Verify a certificate or usage copy (a token, QR text, a token file or a PDF
    document), offline by default; print every check; exit 0 only if valid."""
    console = Console()
    document = read_document(token_or_file)
    certificate_token = None
    if document is not None:
        presented = document.usage_copy or document.certificate
        if document.usage_copy is not None:
            certificate_token = document.certificate
        elif document.second_certificate is not None:
            # A dual-signed certificate's PDF: both tokens, verified suite by suite below.
            presented = f"{document.certificate}\n{document.second_certificate}"
    else:
        presented = _read_presented(token_or_file)
    # A dual-signed certificate's file holds its two tokens, one per line.
    tokens = presented.split()
    if len(tokens) == 2 and all(t.count(".") == 2 for t in tokens):
        presented = tokens[0]
    else:
        tokens = [presented]
    scanned = parse_qr_text(presented) if presented.startswith("http") else None
    if isinstance(scanned, QrToken):  # a usage copy's /u/<token> link
        presented = scanned.token
    if certificate_file is not None:
        certificate_token = _read_presented(str(certificate_file))
    if hub is None and scanned is None and presented.count(".") != 2:
        _refuse_what_no_token_is(presented)
    if hub is not None and scanned is None and presented.count(".") != 2:
        try:
            parse_certificate_id(presented)
        except InvalidRequest:
            _refuse_a_missing_file(presented)
    copy = is_usage_copy(presented)
    if certificate_token is not None and not copy:
        raise InvalidRequest("--certificate", "is given only with a usage copy")
    if hub is not None:
        connection = HubConnection(hub, dev_token, tls_ca, tls_cert, tls_key)
        if copy:
            valid = _verify_copy_online(presented, certificate_token, connection, console)
        else:
            valid = _verify_online(presented, connection, console)
        raise typer.Exit(0 if valid else 1)
    if isinstance(scanned, QrReference):
        console.print(
            f"this QR code links to {scanned.hub_url}: verify it online with --hub "
            f"(certificate {scanned.short_id})"
        )
        raise typer.Exit(1)
    now = _time_option(at, "--at") or datetime.now(UTC)
    try:
        root_jwk = json.loads(root.read_text(encoding="utf-8"))
        bundle_text = bundle.read_text(encoding="ascii").strip()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "--root/--bundle",
            f"cannot read the trust files: {exc} (write them with `tongban trust export`)",
        ) from exc
    try:
        trusted = _load_fresh_or_expired(
            TrustBundle.load, "trust bundle", bundle_text, root_jwk, now, console
        )
    except TongbanError as exc:
        console.print(f"[red]trust bundle refused:[/] {exc.message}")
        raise typer.Exit(1) from exc
    status_list = None
    if status.is_file():
        try:
            status_list = _load_fresh_or_expired(
                StatusList.load,
                "status list",
                status.read_text(encoding="ascii").strip(),
                root_jwk,
                now,
                console,
            )
        except TongbanError as exc:
            console.print(f"[red]status list refused:[/] {exc.message}")
    else:
        console.print(f"[yellow]no status list at {status}[/]")
    verifier = Verifier.from_bundle(trusted, status_list)
    if copy:
        copied = verify_copy_offline(presented, certificate_token, root_jwk, verifier, now)
        print_copy(copied, console)
        if copied.certificate is not None:
            print_checks(list(copied.certificate.checks), console)
        else:
            console.print(
                "[yellow]the certificate's token is needed too: give --certificate FILE, "
                "verify the PDF (it carries both), or verify online with --hub[/]"
            )
        console.print("[bold green]VALID[/]" if copied.valid else "[bold red]NOT VALID[/]")
        raise typer.Exit(0 if copied.valid else 1)
    dual = verifier.verify_tokens(tokens if len(tokens) == 2 else [presented], now=now)
    verdict = dual.verdict
    if verdict.certificate is not None:
        claimed = verdict.certificate
        if not verdict.valid:
            console.print(f"[bold red]{UNVERIFIED}:[/]")
        console.print(
            f"{claimed.type_name} {claimed.id}\nholder {claimed.holder_kind} "
            f"{claimed.holder_value}; issued by {claimed.issuer_department} "
            f"({claimed.issuer_uscc}) at {claimed.issued_at.isoformat()}"
        )
    valid = print_checks(list(verdict.checks), console)
    print_suites(list(dual.suites), console)
    raise typer.Exit(0 if valid else 1)


def _verify_copy_online(
    presented: str, certificate_token: str | None, connection: HubConnection, console: Console
) -> bool:
    request = verification_pb2.VerifyRequest(
        usage_copy=presented, certificate_token=certificate_token or ""
    )
    answer = connection.call(verification_pb2_grpc.VerificationServiceStub, "Verify", request)
    verdict = answer.verdict
    print_copy_answer(verdict, console)
    if verdict.HasField("certificate"):
        print_certificate(verdict.certificate, console)
    _print_answer_checks(verdict, console)
    console.print("[bold green]VALID[/]" if verdict.valid else "[bold red]NOT VALID[/]")
    return bool(verdict.valid)


def _print_answer_checks(verdict: verification_pb2.Verdict, console: Console) -> bool:
    checks = [
        CheckResult(
            CheckName(verification_pb2.CheckName.Name(c.check).removeprefix("CHECK_NAME_")),
            c.passed,
            c.reason,
        )
        for c in verdict.checks
    ]
    return print_checks(checks, console)


def _verify_online(presented: str, connection: HubConnection, console: Console) -> bool:
    if presented.startswith(("http://", "https://")):
        request = verification_pb2.VerifyRequest(qr_text=presented)
    elif presented.count(".") == 2:  # header.payload.signature
        request = verification_pb2.VerifyRequest(token=presented)
    else:
        request = verification_pb2.VerifyRequest(certificate_id=presented)
    answer = connection.call(verification_pb2_grpc.VerificationServiceStub, "Verify", request)
    verdict = answer.verdict
    if verdict.HasField("certificate"):
        print_certificate(verdict.certificate, console, verified=verdict.valid)
    valid = _print_answer_checks(verdict, console) and verdict.valid
    print_suites(
        [SuiteResult(s.alg, s.suite, s.kid, s.valid, tuple(s.reasons)) for s in verdict.suites],
        console,
    )
    return valid
