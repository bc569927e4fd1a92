"""The `tongban` command line: the hub's operator and client entry point.

Each entry point loads the settings once (`exchange.settings.load_settings`) and passes
them down. Project errors end the command with one line on stderr and exit code 2 for
configuration problems, 1 otherwise: never a traceback.
"""

from __future__ import annotations

import sys

import typer
from typer import _click as click
from typer.core import TyperOption

from domain.errors import ConfigError, TongbanError
from exchange.cli import (
    adapters,
    audit,
    catalog,
    certificates,
    client,
    documents,
    keys,
    receipts,
    security,
    server,
    status,
    sync,
)


def _flag_shows_no_type(option: TyperOption, ctx: click.Context) -> str | None:
    # typer 0.29 prints "<bool>" after every flag (--json <bool>), as if it took a value.
    return None if option.is_flag else _DISPLAY_TYPE(option, ctx)


_DISPLAY_TYPE = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="tongban",
    help="Tongban (通办): data-sharing and e-certificate exchange hub for service halls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(server.serve)
app.command("demo")(server.demo)
app.command("lookup")(client.lookup)
app.command("lookup-batch")(client.lookup_batch)
app.command("status")(status.status)
app.command("verify")(certificates.verify)
app.add_typer(server.db_app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(adapters.app, name="adapters")
app.add_typer(sync.app, name="sync")
# Importing `documents` adds these to the cert group.
_DOCUMENT_COMMANDS = (documents.render, documents.usage_copy, documents.holder_query)
app.add_typer(certificates.cert_app, name="cert")
app.add_typer(certificates.trust_app, name="trust")
app.add_typer(security.ca_app, name="ca")
app.add_typer(audit.app, name="audit")
app.add_typer(receipts.app, name="receipt")
app.add_typer(catalog.catalog_app, name="catalog")
app.add_typer(catalog.access_app, name="access")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:
        # A rule across settings names them in its message already.
        text = exc.rule if exc.setting == "configuration" else exc.message
        print(f"tongban: configuration error: {text}", file=sys.stderr)
        sys.exit(2)
    except TongbanError as exc:
        print(f"tongban: {exc.message}", file=sys.stderr)
        sys.exit(1)
