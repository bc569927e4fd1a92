"""Schema migrations, run from code: no ``alembic.ini`` is needed.

The scripts live in ``certstore/migrations`` and ship with the package. Revision ids are
fixed four-digit numbers (``0001``), so every database names its schema the same way.
Each command runs in one transaction, on SQLite and on PostgreSQL alike, so a failed
migration leaves the schema as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from certstore.database import create_engine_for, describe_error
from domain.errors import StoreError

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current", "downgrade", "head", "upgrade"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic `Config` for the store's migrations, optionally with `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Config values are interpolated: a literal % (URL-escaped text) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """Return the newest revision the code knows (what `upgrade` goes to by default).

    Raises:
        StoreError: the migration scripts have more than one head.
    """
    try:
        revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    except CommandError as exc:
        raise StoreError(f"migration scripts are inconsistent: {exc}") from exc
    if revision is None:
        raise StoreError("no migration scripts found")
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (default: the newest).

    Raises:
        ConfigError: `url` is not a supported database URL.
        StoreError: the database failed or is unreachable, or `revision` is unknown.
    """
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` down to `revision` (``"base"`` drops every table).

    Raises:
        ConfigError: `url` is not a supported database URL.
        StoreError: the database failed or is unreachable, or `revision` is unknown.
    """
    _run(url, lambda config: command.downgrade(config, revision))


def current(url: str) -> str | None:
    """Return the revision the database at `url` is at, or None when it has none.

    Raises:
        ConfigError: `url` is not a supported database URL.
        StoreError: the database failed or is unreachable.
    """
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the schema revision: {describe_error(exc)}") from exc
    finally:
        engine.dispose()


def _run(url: str, migrate: Callable[[Config], None]) -> None:
    engine = create_engine_for(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations copy a table and drop the old one; with foreign keys enforced,
        # that drop would cascade-delete the rows pointing at it. Checked after instead.
        event.listen(engine, "connect", _sqlite_foreign_keys_off)
    config = alembic_config(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            migrate(config)
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                raise StoreError("migration failed: it left rows with dangling foreign keys")
    except SQLAlchemyError as exc:
        raise StoreError(f"migration failed: {describe_error(exc)}") from exc
    except CommandError as exc:
        raise StoreError(f"migration failed: {exc}") from exc
    finally:
        engine.dispose()


def _sqlite_foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")
