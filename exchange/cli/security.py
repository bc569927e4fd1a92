"""`tongban ca`: a dev/test CA for secure mode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certstore.field_cipher import FieldCipher
from domain.errors import ConfigError
from domain.subjects import parse_key
from exchange.auth.ca import CertificateAuthority
from exchange.auth.identity import issue_dev_token
from exchange.cli.server import ConfigOption, _settings

ca_app = typer.Typer(
    help="A certificate authority for running the hub with mTLS.", no_args_is_help=True
)

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
