"""`tongban keys`: subject keys (check) and signing keys (generate, list, rotate, compromise).

The signing-key commands work on the hub's database directly, with the configuration's
passphrase; running hub nodes see the change within `signing.poll_seconds`.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from certstore.certificates import StoredKey
from domain.errors import InvalidKey, InvalidRequest
from domain.subjects import KeyKind, parse_key
from exchange.certificates.keys import KeyManager, UnavailableKeyProvider
from exchange.certificates.types import CertificateTypes
from exchange.cli.server import ConfigOption, _settings
from exchange.settings import Settings
from signing import Algorithm

app = typer.Typer(help="Check subject keys; manage signing keys.", no_args_is_help=True)


@app.command("check")
def check(
    kind: Annotated[KeyKind, typer.Argument(help="Key kind.", case_sensitive=False)],
    value: Annotated[str, typer.Argument(help="The key as written (full-width is fine).")],
) -> None:
    """Normalize and validate a subject key: print it and exit 0, or print the rule broken
    and exit 1."""
    try:
        key = parse_key(kind, value)
    except InvalidKey as exc:
        typer.echo(f"invalid {kind.value}: {exc.key_rule}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(key.value)
    for related in key.related():
        typer.echo(f"  embeds {related.kind.value} {related.value}")


# --- signing keys ---------------------------------------------------------------------


def _key_manager(config: Path | None) -> tuple[KeyManager, Settings]:
    from certstore.certificates import CertificateStore
    from exchange.certificates.library import key_provider, status_list_uri
    from exchange.hub import open_store

    settings = _settings(config)
    store = CertificateStore(
        open_store(settings),
        status_list_uri=status_list_uri(settings),
        audit_hash=settings.crypto.suite.hash_alg,
    )
    manager = KeyManager(
        store, key_provider(settings), algorithm=Algorithm(settings.signing_algorithm)
    )
    return manager, settings


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"operator {user}@{socket.gethostname()} (tongban keys)"


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(option, "write a time like 2026-01-31T08:00:00Z") from exc
    if moment.tzinfo is None:
        raise InvalidRequest(option, "give the time zone, like 2026-01-31T08:00:00+08:00")
    return moment


def _describe(key: StoredKey) -> str:
    return f"{key.kid}  {key.alg.value}  {key.owner}  {key.status.value}"


AlgOption = Annotated[
    str | None,
    typer.Option(
        "--alg",
        help="EdDSA, ES256 or SM2 (= SM3withSM2) (default: signing.algorithm, "
        "else the [crypto] suite's: EdDSA, or SM2 for gm).",
    ),
]


def _alg(value: str | None) -> Algorithm | None:
    if value is None:
        return None
    try:
        return Algorithm(value)
    except ValueError:
        raise InvalidRequest("--alg", f"{value!r} is not EdDSA, ES256 or SM2") from None


@app.command("generate")
def generate_key(
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="The issuing department's USCC.")
    ] = None,
    department: Annotated[
        str | None,
        typer.Option("--department", help="Its name (default: from certificate_types)."),
    ] = None,
    root: Annotated[
        bool, typer.Option("--root", help="Generate the hub root key instead.")
    ] = False,
    alg: AlgOption = None,
    config: ConfigOption = None,
) -> None:
    """Generate a signing key and activate it: the hub root key, or an issuer's first key."""
    manager, settings = _key_manager(config)
    if root == (issuer is not None):
        raise InvalidRequest("--issuer", "give either --issuer USCC or --root")
    if root:
        key = manager.generate_root(_operator(), _alg(alg))
    else:
        assert issuer is not None
        uscc = parse_key(KeyKind.USCC, issuer).value
        name = department or CertificateTypes(settings.certificate_types).issuers().get(uscc)
        if not name:
            raise InvalidRequest(
                "--department",
                f"no certificate type in the configuration names issuer {uscc}; "
                "give the issuing department's name",
            )
        key = manager.generate(uscc, name, _operator(), _alg(alg))
    typer.echo(f"generated and activated {_describe(key)}")


@app.command("list")
def list_keys(config: ConfigOption = None) -> None:
    """List the hub root key and every issuer key with its lifecycle (reads only: the
    store and the passphrase file are never created)."""
    from certstore.certificates import CertificateStore
    from exchange.hub import open_existing_store

    settings = _settings(config)
    store = CertificateStore(open_existing_store(settings))
    manager = KeyManager(store, UnavailableKeyProvider("listing needs no private key"))
    # Key ids are what people copy from here: wrap them, never cut them short.
    table = Table(
        Column("kid", overflow="fold"),
        Column("owner", overflow="fold"),
        "alg",
        "status",
        Column("period", overflow="fold"),
    )
    for key in manager.all():
        status = key.status.value
        if key.compromised_since is not None:
            status += f" since {key.compromised_since.isoformat()}"
        until = key.not_after.isoformat() if key.not_after else ""
        table.add_row(
            key.kid,
            "root" if key.is_root else f"{key.owner} {key.issuer_department or ''}",
            key.alg.value,
            status,
            f"{key.not_before.isoformat()} .. {until}",
        )
    Console().print(table)


@app.command("rotate")
def rotate_key(
    issuer: Annotated[str, typer.Option("--issuer", help="The issuing department's USCC.")],
    at: Annotated[
        str | None, typer.Option("--at", help="When the new key takes over (default: now).")
    ] = None,
    alg: AlgOption = None,
    config: ConfigOption = None,
) -> None:
    """Give an issuer a new signing key; the old one is retired and still verifies."""
    manager, _ = _key_manager(config)
    uscc = parse_key(KeyKind.USCC, issuer).value
    new, retired = manager.rotate(uscc, _operator(), at=_when(at, "--at"), alg=_alg(alg))
    typer.echo(f"new key     {_describe(new)} from {new.not_before.isoformat()}")
    typer.echo(f"retired key {_describe(retired)}")


@app.command("compromise")
def compromise_key(
    kid: Annotated[str, typer.Argument(help="The key id (kid).")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Earliest time the key may have leaked (default: now)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Give the issuer a new key if this one was active.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Mark a key compromised since a time: what it signed from then on fails verification."""
    manager, _ = _key_manager(config)
    moment = _when(since, "--since") or datetime.now(UTC)
    report = manager.compromise(kid, moment, _operator(), replace=replace)
    typer.echo(f"compromised {_describe(report.key)} since {moment.isoformat()}")
    typer.echo(
        f"{report.affected_certificates} stored certificates signed since then no longer "
        "verify; issue them again"
    )
    if report.replacement is not None:
        typer.echo(f"replacement {_describe(report.replacement)}")
