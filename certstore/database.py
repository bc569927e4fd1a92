"""Engines, sessions and the error boundary of the store.

The store speaks synchronous SQLAlchemy. gRPC services call it through
`asyncio.to_thread`, so every unit of work opens its own `Session` from the shared,
thread-safe engine (`Database.transaction`); a session is never shared across threads.

Two dialects are supported:

- SQLite, the embedded default, as a file (``sqlite:///path/to/tongban.db``): WAL
  journal, foreign keys on, a busy timeout, ``synchronous=NORMAL``, set on every new
  connection. Write transactions start with ``BEGIN IMMEDIATE`` so that concurrent
  writers queue on the busy timeout instead of failing when a read lock cannot be
  upgraded.
- PostgreSQL through psycopg 3 (``postgresql+psycopg://user@host/db``), with
  ``pool_pre_ping`` so a restarted server costs no failed request.

Every SQLAlchemy exception is converted to `StoreError` here, at the boundary; nothing
above `certstore` sees one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from domain.errors import ConfigError, StoreError

__all__ = [
    "DEFAULT_SQLITE_FILENAME",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Database",
    "create_engine_for",
    "default_sqlite_url",
    "describe_error",
    "insert_for",
]

DEFAULT_SQLITE_FILENAME: Final = "tongban.db"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
"""How long a SQLite connection waits for another writer before giving up."""

POSTGRES_CONNECT_TIMEOUT_S: Final = 10
"""Default psycopg connect timeout when the URL names none, so health checks return."""

_SETTING: Final = "database.url"
_SQLITE_DRIVERS: Final = frozenset({"sqlite", "sqlite+pysqlite"})
_POSTGRES_DRIVERS: Final = frozenset({"postgresql", "postgresql+psycopg"})
# Execution option read by the SQLite "begin" listener: which BEGIN to emit.
_SQLITE_BEGIN_OPTION: Final = "tongban_sqlite_begin"


def default_sqlite_url(data_dir: Path) -> str:
    """Return the URL of the embedded SQLite database, ``<data_dir>/tongban.db``.

    The path is made absolute so the URL does not depend on the working directory.
    """
    return f"sqlite:///{(data_dir / DEFAULT_SQLITE_FILENAME).resolve()}"


def _json_dumps(value: Any) -> str:
    # Keep Chinese text readable in the database instead of \uXXXX escapes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def create_engine_for(url: str) -> Engine:
    """Create the engine for a SQLite file or PostgreSQL (psycopg 3) database URL.

    For SQLite the parent folder of the database file is created. No connection is
    opened here; the first unit of work or `Database.ping` opens one.

    Raises:
        ConfigError: the URL cannot be parsed, names another dialect or driver, or is an
            in-memory SQLite database (the store needs a file shared by its connections).
        StoreError: the parent folder of a SQLite file cannot be created.
    """
    try:
        parsed = sa.make_url(url)
    except ArgumentError as exc:
        raise ConfigError(_SETTING, "is not a database URL") from exc
    if parsed.drivername in _SQLITE_DRIVERS:
        return _create_sqlite_engine(parsed)
    if parsed.drivername in _POSTGRES_DRIVERS:
        return _create_postgres_engine(parsed.set(drivername="postgresql+psycopg"))
    raise ConfigError(
        _SETTING,
        f"unsupported database {parsed.drivername!r}: "
        "use sqlite:///path or postgresql+psycopg://...",
    )


def _create_sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise ConfigError(_SETTING, "SQLite must be a file (sqlite:///path/to/tongban.db)")
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of the SQLite database: {exc}") from exc
    engine = sa.create_engine(url, json_serializer=_json_dumps)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN out of pysqlite's hands; `_begin_sqlite_transaction` emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    begin = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "BEGIN IMMEDIATE")
    connection.exec_driver_sql(begin)


def _create_postgres_engine(url: URL) -> Engine:
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(POSTGRES_CONNECT_TIMEOUT_S)})
    return sa.create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps)


def describe_error(exc: SQLAlchemyError) -> str:
    """Return a short, loggable description of a SQLAlchemy error.

    Only the driver's first message line is kept: PostgreSQL's DETAIL lines and the
    statement parameters can hold personal identifiers.
    """
    origin: BaseException = getattr(exc, "orig", None) or exc
    first_line = str(origin).strip().splitlines()[0] if str(origin).strip() else ""
    return f"{type(origin).__name__}: {first_line}" if first_line else type(origin).__name__


def insert_for(session: Session, entity: Any) -> sqlite.Insert | postgresql.Insert:
    """Return the dialect's ``INSERT`` for `entity`, which offers ``on_conflict_do_*``.

    Raises:
        StoreError: the session is bound to a dialect the store does not support.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(entity)
    if dialect == "postgresql":
        return postgresql.insert(entity)
    raise StoreError(f"unsupported database dialect {dialect!r}")


class Database:
    """The store's engine and session factory; one per process, shared by threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process queue for it here,
        # woken the moment it is free, instead of in SQLite's busy handler, which
        # sleeps for up to 100 ms between tries; other processes still meet
        # `busy_timeout`.
        self._sqlite_writer = threading.RLock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        """Create a `Database` on `url` (see `create_engine_for`).

        Raises:
            ConfigError: the URL is not a supported database URL.
            StoreError: the folder of a SQLite file cannot be created.
        """
        return cls(create_engine_for(url))

    @property
    def engine(self) -> Engine:
        """The underlying engine (for migrations and tests)."""
        return self._engine

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """Run one unit of work in its own session and transaction.

        The transaction commits when the block ends normally and rolls back when it
        raises. `readonly` is a promise that the block only reads; on SQLite it starts
        a deferred transaction so that readers do not queue behind writers.

        Raises:
            StoreError: the database failed or is unreachable, or the commit failed;
                the SQLAlchemy exception is chained as the cause. Exceptions raised by
                the block itself pass through unchanged after the rollback.
        """
        with nullcontext() if readonly else self._writing():
            session = self._sessions()
            try:
                if self.dialect_name == "sqlite":
                    begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"
                    session.connection(execution_options={_SQLITE_BEGIN_OPTION: begin})
                yield session
                session.commit()
            except SQLAlchemyError as exc:
                raise StoreError(f"database error: {describe_error(exc)}") from exc
            finally:
                _close_quietly(session)

    @contextmanager
    def core_transaction(self) -> Iterator[Connection]:
        """Like `transaction()`, on a bare Core connection: less overhead per unit of
        work, for hot paths that only run Core statements (the audit trail's appends).

        Raises `StoreError` as `transaction()` does.
        """
        with self._writing():
            try:
                with self._engine.begin() as connection:
                    yield connection
            except SQLAlchemyError as exc:
                raise StoreError(f"database error: {describe_error(exc)}") from exc

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this process's SQLite write turn (nothing on PostgreSQL).

        Raises `StoreError` when the turn does not come within the busy timeout.
        """
        lock = self._sqlite_writer
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise StoreError("database error: the SQLite database stayed locked by a writer")
        try:
            yield
        finally:
            lock.release()

    def ping(self) -> bool:
        """Return whether the database answers a trivial query. Never raises."""
        try:
            with self._engine.connect() as connection:
                if self.dialect_name == "sqlite":
                    connection = connection.execution_options(**{_SQLITE_BEGIN_OPTION: "BEGIN"})
                connection.execute(sa.text("SELECT 1")).scalar_one()
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, or after a fork)."""
        self._engine.dispose()


def _close_quietly(session: Session) -> None:
    # Closing returns the connection to the pool and rolls back anything still open; a
    # failure here must not hide the error that ended the unit of work.
    try:
        session.close()
    except SQLAlchemyError:
        session.invalidate()
