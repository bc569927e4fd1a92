"""`tongban serve`, `tongban demo` and `tongban db`: running the hub and its store."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer

from certstore.migrate import current, upgrade
from exchange.logs import configure_logging
from exchange.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="TONGBAN_CONFIG", help="TOML configuration file."),
]

db_app = typer.Typer(help="Manage the hub's database.", no_args_is_help=True)
log = structlog.get_logger("tongban.cli")


def _settings(config: Path | None, **overrides: Any) -> Settings:
    settings = load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.logging.level, settings.logging.format)
    return settings


def serve(
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT to serve on (overrides config).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes serving the port together, one per core (overrides config).",
        ),
    ] = None,
) -> None:
    """Run the hub's gRPC server until SIGTERM or Ctrl-C."""
    from exchange.hub import Hub
    from exchange.server import serve_until_signalled

    overrides = {"server.listen": listen, "server.workers": workers}
    settings = _settings(config, **overrides)
    if settings.server.workers > 1:
        from exchange.supervisor import supervise

        given = {name: value for name, value in overrides.items() if value is not None}
        raise typer.Exit(supervise(settings, config, given))
    hub = Hub.open(settings)
    asyncio.run(serve_until_signalled(hub, settings.server.listen))


def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its world and store.")
    ] = Path("data/demo"),
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the world up until Ctrl-C.")
    ] = False,
    residents: Annotated[int, typer.Option(help="Residents in the synthetic world.")] = 3000,
    companies: Annotated[int, typer.Option(help="Companies in the synthetic world.")] = 600,
) -> None:
    """Start four simulated departments and a hub on SQLite, and walk through the story."""
    from exchange.demo.tour import run_tour

    configure_logging("ERROR")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_tour(data_dir, keep_running=keep_running, residents=residents, companies=companies)
        )


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION (default: the newest)."""
    settings = _settings(config)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {current(settings.database_url)}")
