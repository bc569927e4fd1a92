"""`tongban ca` (a dev/test CA for secure mode) and `tongban audit` (the audit trail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from certstore.audit import AuditLog
from certstore.certificates import CertificateStore
from certstore.database import Database
from certstore.field_cipher import FieldCipher
from domain.errors import ConfigError
from domain.subjects import parse_key
from exchange.audit import verified_checkpoints
from exchange.auth.ca import CertificateAuthority
from exchange.auth.identity import issue_dev_token
from exchange.cli.server import ConfigOption, _settings
from signing.keys import PublicKey

ca_app = typer.Typer(
    help="A certificate authority for running the hub with mTLS.", no_args_is_help=True
)
audit_app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)

CaDir = Annotated[Path, typer.Option("--dir", help="The CA's folder.")]


@ca_app.command("init")
def ca_init(
    folder: CaDir = Path("data/ca"),
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "Tongban Dev CA",
) -> None:
    """Create a CA (ca.crt, ca.key readable by its owner only, an empty crl.pem)."""
    CertificateAuthority.init(folder, name)
    typer.echo(f"CA created in {folder}: trust {folder / 'ca.crt'}")


@ca_app.command("issue-server")
def ca_issue_server(
    name: Annotated[str, typer.Argument(help="Server name, for example 'hub'.")],
    hosts: Annotated[
        list[str], typer.Option("--host", help="DNS name or IP address (repeatable).")
    ],
    folder: CaDir = Path("data/ca"),
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: the CA folder).")
    ] = None,
) -> None:
    """Issue a TLS server certificate (for the hub or a department service)."""
    issued = CertificateAuthority.load(folder).issue_server(name, hosts, out or folder)
    typer.echo(f"certificate {issued.certificate}\nkey         {issued.private_key}")


@ca_app.command("issue-client")
def ca_issue_client(
    organization: Annotated[str, typer.Option("--org", help="The caller's USCC.")],
    system: Annotated[str, typer.Option("--system", help="The calling system's name.")],
    roles: Annotated[
        list[str] | None, typer.Option("--role", help="e.g. auditor (repeatable).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="KIND:VALUE of the data subject this channel acts for.")
    ] = None,
    days: Annotated[float, typer.Option(help="Validity in days.")] = 365,
    folder: CaDir = Path("data/ca"),
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: the CA folder).")
    ] = None,
) -> None:
    """Issue a client certificate carrying a caller's identity."""
    bound = parse_key(*subject.split(":", 1)) if subject else None
    issued = CertificateAuthority.load(folder).issue_client(
        organization, system, out or folder, roles=tuple(roles or ()), subject_key=bound, days=days
    )
    typer.echo(
        f"certificate {issued.certificate}\nkey         {issued.private_key}\n"
        f"serial      {issued.serial}"
    )


@ca_app.command("revoke")
def ca_revoke(
    serial: Annotated[int, typer.Argument(help="The certificate's serial number.")],
    folder: CaDir = Path("data/ca"),
) -> None:
    """Put a certificate on the CA's revocation list; a hub using the CRL refuses it."""
    CertificateAuthority.load(folder).revoke(serial)
    typer.echo(f"revoked {serial}; the CRL is {folder / 'crl.pem'}")


@ca_app.command("dev-token")
def ca_dev_token(
    organization: Annotated[str, typer.Option("--org", help="The caller's USCC.")],
    system: Annotated[str, typer.Option("--system", help="The calling system's name.")],
    roles: Annotated[list[str] | None, typer.Option("--role", help="(repeatable)")] = None,
    config: ConfigOption = None,
) -> None:
    """Print a dev-mode token (send as `authorization: Bearer <token>`)."""
    settings = _settings(config)
    secret = settings.security.dev_token_secret
    if secret is None:
        raise ConfigError("security.dev_token_secret", "set it to sign dev tokens")
    organization = parse_key("USCC", organization).value
    typer.echo(
        issue_dev_token(secret.get_secret_value().encode(), organization, system, roles=roles or ())
    )


@ca_app.command("record-key")
def ca_record_key() -> None:
    """Print a new AES-256 key (base64) for security.record_keys."""
    typer.echo(FieldCipher.generate_key())


@audit_app.command("verify")
def audit_verify(
    config: ConfigOption = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The hub's root public key (JWK, from `tongban trust export`) to check "
            "the signed checkpoints with; default: the root key in the store.",
        ),
    ] = None,
) -> None:
    """Walk the audit chain and its signed checkpoints; exit 0 when intact, 1 naming the
    first tampered entry."""
    from exchange.hub import open_store

    settings = _settings(config)
    database = open_store(settings)
    try:
        store = AuditLog(database)
        root_key = _root_public_key(database, root)
        checkpoints, problem = verified_checkpoints(store, root_key) if root_key else ({}, None)
        report = store.verify(checkpoints)
    finally:
        database.dispose()
    if problem is not None:
        typer.echo(f"audit checkpoints BROKEN: {problem}")
        raise typer.Exit(1)
    if report.intact:
        typer.echo(
            f"audit chain intact: {report.entries_checked} entries, "
            f"{len(checkpoints)} signed checkpoints verified"
        )
        return
    typer.echo(f"audit chain BROKEN at entry {report.first_bad_sequence}: {report.problem}")
    raise typer.Exit(1)


def _root_public_key(database: Database, path: Path | None) -> PublicKey | None:
    if path is not None:
        try:
            return PublicKey.from_jwk(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ConfigError("--root", f"cannot read a JWK from {path}: {exc}") from exc
    root = next((k for k in CertificateStore(database).signing_keys() if k.is_root), None)
    return PublicKey.from_jwk(root.public_jwk) if root else None
