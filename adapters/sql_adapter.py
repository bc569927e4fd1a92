"""The `sql` adapter kind: a department's own database, read through SQLAlchemy, read-only.

The adapter reads one table (optionally in a schema) or runs one parameterized query
that selects a subject's rows by ``:key``; its mappings turn each row into records.
Connections are read-only at the database: SQLite files are opened with
``mode=ro`` (URI filename), PostgreSQL sessions run every transaction ``READ ONLY``, and
MySQL / MariaDB sessions (PyMySQL, ``mysql+pymysql://`` or ``mariadb+pymysql://``) start
with ``SET SESSION TRANSACTION READ ONLY``. The department's account should still be a
read-only one: the hub's setting is a second lock, not the first.

Another SQLAlchemy dialect (Oracle, Dameng, ...) is added here in three places: its
driver names in a set like `_MYSQL_DRIVERS` that `SqlOptions` accepts (and the driver
pinned in pyproject.toml), how its sessions are made read-only in `_read_only_engine`,
and which of its errors are transient in `_transient`; then the shared tests in
tests/adapters/test_sql_adapter.py run against a real server of it.

Rows are read as the driver returns them, with no SQLAlchemy type processing, so a
badly stored value spoils one row (a rejection), never a whole answer. For change
streams, rows are paged in the order of the configured cursor columns (for example
``updated_at`` then ``id``) with keyset pagination; the cursor string holds the last
row's cursor values, typed, so a sync job resumes exactly after it.

Blocking SQLAlchemy calls run in worker threads. A failure to connect is a retryable
`AdapterError`; an SQL error is a non-retryable one naming the error class.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, Self, TypeVar

import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.types import NullType

from adapters.base import Adapter, AdapterSpec, Change, ChangeBatch, Rejection
from adapters.mapping import AdapterOptions, OptionsModel, parse_options, record_matches
from domain.errors import AdapterError, InvalidRequest
from domain.records import Purpose, SourceRecord
from domain.subjects import SubjectKey, mask_identifiers

__all__ = ["SqlAdapter", "SqlChangesOptions", "SqlOptions"]

# SQLAlchemy's own rule for bind parameter names in text().
_BIND: Final = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_QUERY_PARAMETERS: Final = frozenset({"key", "key_kind"})
_SQLITE_DRIVERS: Final = frozenset({"sqlite", "sqlite+pysqlite"})
_POSTGRES_DRIVERS: Final = frozenset({"postgresql+psycopg"})
_MYSQL_DRIVERS: Final = frozenset({"mysql+pymysql", "mariadb+pymysql"})
_URL_RULE: Final = (
    "must start with sqlite:///, postgresql+psycopg://, mysql+pymysql:// or mariadb+pymysql://"
)
# MySQL / MariaDB client and server error numbers that mean "try again later": cannot
# connect, server gone, connection lost, too many connections, lock wait, deadlock.
_MYSQL_TRANSIENT: Final = frozenset({1040, 1205, 1213, 2002, 2003, 2006, 2013})
# PostgreSQL SQLSTATE classes and codes that mean "try again later".
_PG_TRANSIENT_CLASSES: Final = ("08", "53", "57P")
_PG_TRANSIENT_CODES: Final = frozenset({"40001", "40P01", "55P03", "57014"})
_SQLITE_TRANSIENT: Final = ("database is locked", "database table is locked", "unable to open")

Result = TypeVar("Result")


class SqlChangesOptions(OptionsModel):
    """How to stream a table's changes: the columns that order it, most significant first.

    The columns together must be unique and never decrease for new or changed rows,
    for example ``["updated_at", "id"]``; they should be NOT NULL.
    """

    cursor_columns: list[str] = Field(min_length=1, max_length=4)


class SqlOptions(AdapterOptions):
    """Options of a `sql` adapter."""

    url: str
    table: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    query: str | None = None
    # At most this many rows are read for one subject.
    max_rows: int = Field(default=1000, ge=1, le=100_000)
    changes: SqlChangesOptions | None = None

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.drivername in _SQLITE_DRIVERS:
            if not url.database or url.database == ":memory:":
                raise ValueError("a SQLite source must be a database file")
        elif url.drivername not in _POSTGRES_DRIVERS | _MYSQL_DRIVERS:
            raise ValueError(_URL_RULE)
        return value

    @field_validator("query")
    @classmethod
    def _query_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^\s*(select|with)\b", value, re.IGNORECASE):
            raise ValueError("must be a SELECT (or WITH ... SELECT) statement")
        names = set(_BIND.findall(value))
        if "key" not in names:
            raise ValueError("must select the subject's rows with the :key parameter")
        unknown = sorted(names - _QUERY_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown parameter :{unknown[0]} (only :key and :key_kind)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table and query")
        if self.query is not None and self.schema_ is not None:
            raise ValueError("schema goes with table, not with query")
        if self.changes is not None and self.table is None:
            raise ValueError("changes need a table to page through, not a query")
        return self


class SqlAdapter(Adapter):
    """Reads a department database read-only through declared mappings."""

    def __init__(self, spec: AdapterSpec) -> None:
        """Raises `InvalidRequest` naming the option when the options are invalid.

        Nothing connects here: the engine connects on the first fetch.
        """
        options = parse_options(SqlOptions, spec.options)
        options.check_serves(spec)
        super().__init__(spec)
        self.options = options
        self.engine = _read_only_engine(make_url(options.url), spec.timeout)
        self._table: sa.Table | None = None

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord | Rejection]:
        chosen = self.options.mappings_for(subject.kind, record_types)
        if not chosen:
            return []
        columns = sorted({source_field for _, source_field in chosen})
        select = functools.partial(self._rows_for, subject=subject, columns=columns)
        rows = await asyncio.to_thread(self._run, select)
        answer: list[SourceRecord | Rejection] = []
        for position, row in enumerate(rows):
            for mapping, _ in chosen:
                mapped = mapping.map_row(row, where=f"row {position}")
                if isinstance(mapped, SourceRecord) and not record_matches(mapped, subject):
                    # Only a query can select such a row; the source answered another subject.
                    reason = "the row's key does not name the requested subject"
                    mapped = Rejection(mapped.source_record_id, reason)
                answer.append(mapped)
        return answer

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        changes_options = self.options.changes
        if changes_options is None:
            raise AdapterError(self.adapter_id, "options.changes is not configured")
        after = decode_cursor(cursor, len(changes_options.cursor_columns)) if cursor else None
        batch_size = max(1, batch_size)
        count_rest = True
        while True:
            page = functools.partial(
                self._page, after=after, limit=batch_size, count_rest=count_rest
            )
            rows, total = await asyncio.to_thread(self._run, page)
            if not rows:
                return
            changes: list[Change] = []
            for row, position in rows:
                where = encode_cursor(position)
                for mapping in self.options.mappings:
                    changes.append(mapping.map_change(row, where=where))
            after = rows[-1][1]
            estimate = None if total is None else total * len(self.options.mappings)
            yield ChangeBatch(tuple(changes), encode_cursor(after), estimate)
            count_rest = False
            if len(rows) < batch_size:
                return

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)

    # --- in worker threads ---------------------------------------------------------------

    def _run(self, work: Callable[[Connection], Result]) -> Result:
        try:
            connection = self.engine.connect()
        except SQLAlchemyError as exc:
            raise AdapterError(
                self.adapter_id, f"cannot connect: {_describe(exc)}", retryable=True
            ) from exc
        with connection:
            try:
                return work(connection)
            except NoSuchTableError as exc:
                raise AdapterError(self.adapter_id, f"no table {exc}") from exc
            except SQLAlchemyError as exc:
                raise AdapterError(
                    self.adapter_id, _describe(exc), retryable=_transient(exc)
                ) from exc
            except ValueError as exc:  # a driver could not convert a stored value
                raise AdapterError(self.adapter_id, _describe(exc)) from exc

    def _source_table(self, connection: Connection) -> sa.Table:
        if self._table is None:
            assert self.options.table is not None
            table = sa.Table(
                self.options.table,
                sa.MetaData(),
                schema=self.options.schema_,
                autoload_with=connection,
            )
            for column, option in _required_columns(self.options):
                if column not in table.c:
                    raise AdapterError(
                        self.adapter_id,
                        f"table {table.fullname} has no column {column!r} ({option})",
                    )
            self._table = table
        return self._table

    def _rows_for(
        self, connection: Connection, *, subject: SubjectKey, columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        limit = self.options.max_rows
        if self.options.query is not None:
            parameters = {"key": subject.value}
            if "key_kind" in _BIND.findall(self.options.query):
                parameters["key_kind"] = subject.kind.value
            result = connection.execute(sa.text(self.options.query), parameters)
            return [dict(row) for row in result.mappings().fetchmany(limit)]
        table = self._source_table(connection)
        matches = [_raw(table.c[column]) == subject.value for column in columns]
        order = table.c[self.options.mappings[0].id_field]
        statement = (
            sa.select(*_raw_columns(table)).where(sa.or_(*matches)).order_by(order).limit(limit)
        )
        return [dict(row) for row in connection.execute(statement).mappings()]

    def _page(
        self,
        connection: Connection,
        *,
        after: tuple[Any, ...] | None,
        limit: int,
        count_rest: bool,
    ) -> tuple[list[tuple[dict[str, Any], tuple[Any, ...]]], int | None]:
        assert self.options.changes is not None
        table = self._source_table(connection)
        order = [_raw(table.c[name]) for name in self.options.changes.cursor_columns]
        # A row with a NULL cursor value has no place in the order; it is not streamed.
        present = sa.and_(*(column.is_not(None) for column in order))
        statement = sa.select(*_raw_columns(table)).where(present)
        counting = sa.select(sa.func.count()).select_from(table).where(present)
        if after is not None:
            later = sa.tuple_(*order) > sa.tuple_(*(sa.literal(v, NullType()) for v in after))
            statement = statement.where(later)
            counting = counting.where(later)
        statement = statement.order_by(*order).limit(limit)
        total = connection.execute(counting).scalar_one() if count_rest else None
        names = self.options.changes.cursor_columns
        rows = [dict(row) for row in connection.execute(statement).mappings()]
        return [(row, tuple(row[name] for name in names)) for row in rows], total


def _required_columns(options: SqlOptions) -> list[tuple[str, str]]:
    """The columns the table must have, each with the option that names it."""
    required: dict[str, str] = {}
    for position, mapping in enumerate(options.mappings):
        prefix = f"options.mappings[{position}]"
        required.setdefault(mapping.key_field, f"{prefix}.key_field")
        required.setdefault(mapping.id_field, f"{prefix}.id_field")
        for kind, column in mapping.related_key_fields.items():
            required.setdefault(column, f"{prefix}.related_key_fields.{kind}")
    if options.changes is not None:
        for column in options.changes.cursor_columns:
            required.setdefault(column, "options.changes.cursor_columns")
    return list(required.items())


def _raw(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # No SQLAlchemy type processing: values come and go as the driver has them.
    return sa.type_coerce(column, NullType())


def _raw_columns(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    return [_raw(column).label(column.name) for column in table.c]


def _read_only_engine(url: URL, timeout: float) -> Engine:
    if url.drivername in _SQLITE_DRIVERS:
        assert url.database is not None
        path = url.database.removeprefix("file:")
        query = {**url.query, "mode": "ro", "uri": "true"}
        read_only = url.set(database="file:" + urllib.parse.quote(path, safe="/:"), query=query)
        return sa.create_engine(read_only, connect_args={"timeout": timeout}, pool_timeout=timeout)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(1, math.ceil(timeout))
    if url.drivername in _MYSQL_DRIVERS:
        # Every session of this engine is read-only, whatever the account may do.
        connect_args["init_command"] = "SET SESSION TRANSACTION READ ONLY"
        connect_args["read_timeout"] = max(1, math.ceil(timeout))
        return sa.create_engine(
            url, pool_pre_ping=True, pool_timeout=timeout, connect_args=connect_args
        )
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        # A pool starved by calls that timed out fails fast (retryable) instead of queueing.
        pool_timeout=timeout,
        connect_args=connect_args,
        execution_options={"postgresql_readonly": True},
    )


def _transient(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    original = getattr(exc, "orig", None)
    number = original.args[0] if original is not None and original.args else None
    if type(original).__module__.startswith("pymysql") and isinstance(number, int):
        return number in _MYSQL_TRANSIENT
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_PG_TRANSIENT_CLASSES) or sqlstate in _PG_TRANSIENT_CODES
    return isinstance(exc, sa.exc.OperationalError) and str(original).startswith(_SQLITE_TRANSIENT)


def _describe(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    text = mask_identifiers(lines[0]) if lines else ""
    name = type(original).__name__
    return f"{name}: {text}" if text else name


# --- cursors -----------------------------------------------------------------------------

_ENCODERS: Final[tuple[tuple[type, str, Callable[[Any], Any]], ...]] = (
    (bool, "bool", bool),
    (int, "int", int),
    (float, "float", float),
    (Decimal, "decimal", str),
    (str, "str", str),
    (datetime, "datetime", datetime.isoformat),
    (date, "date", date.isoformat),
    (time, "time", time.isoformat),
    (uuid.UUID, "uuid", str),
)
_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {
    "bool": bool,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "str": str,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "uuid": uuid.UUID,
}


def encode_cursor(values: Sequence[Any]) -> str:
    """A cursor string holding the last row's cursor values with their types.

    Raises `ValueError` for a value of a type a cursor cannot hold (or NULL).
    """
    encoded: list[list[Any]] = []
    for value in values:
        for python_type, tag, convert in _ENCODERS:
            if isinstance(value, python_type):
                encoded.append([tag, convert(value)])
                break
        else:
            raise ValueError(f"a cursor column holds a {type(value).__name__}")
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def decode_cursor(cursor: str, width: int) -> tuple[Any, ...]:
    """The values `encode_cursor` wrote. Raises `InvalidRequest` for a foreign cursor."""
    try:
        encoded = json.loads(cursor)
        if not isinstance(encoded, list) or len(encoded) != width:
            raise ValueError(f"expected {width} values")
        return tuple(_DECODERS[tag](value) for tag, value in encoded)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidRequest("cursor", f"not a cursor of this sql adapter: {exc}") from exc
