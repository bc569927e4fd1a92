"""The record cache: department records as last fetched, found by any key of their subject.

A record is identified by ``(adapter_id, record_type, source_record_id)`` and filed under
every key that names its subject (`record_keys`): the subject itself, the related keys
the source gave, and the keys derived from those (a USCC's embedded organization code,
`SubjectKey.related`). A lookup by organization code therefore finds records a source
filed under the USCC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from certstore.database import Database, insert_for
from certstore.field_cipher import FieldCipher, record_context
from certstore.models import RecordKeyRow, RecordRow
from domain.crypto import HashAlg
from domain.errors import StoreError
from domain.records import SourceRecord, StoredRecord, canonical_json
from domain.subjects import KeyKind, SubjectKey

__all__ = ["UPSERT_BATCH_SIZE", "RecordBatch", "RecordRepository", "upsert_records_in"]

UPSERT_BATCH_SIZE: Final = 500
"""Rows per INSERT statement; keeps SQLite well under its bound-parameter limit."""

# Columns an upsert overwrites; id and the identity columns stay as they are.
_UPDATED_COLUMNS: Final = (
    "department",
    "subject_kind",
    "subject_value",
    "related_subjects",
    "fields",
    "content_hash",
    "fetched_at",
    "source_updated_at",
    "withdrawn_at",
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class RecordBatch:
    """One adapter's answer, to be stored with `RecordRepository.upsert_batches`."""

    adapter_id: str
    department: str
    records: Sequence[SourceRecord]
    fetched_at: datetime


@dataclass(frozen=True)
class _Prepared:
    identity: tuple[str, str]
    row: dict[str, Any]
    filing_keys: frozenset[SubjectKey]
    stored: StoredRecord


class RecordRepository:
    """Stores department records and finds them by subject key. Safe to share by threads."""

    def __init__(
        self,
        database: Database,
        cipher: FieldCipher | None = None,
        hash_alg: HashAlg = HashAlg.SHA256,
    ) -> None:
        """`cipher`, when given, seals every record's fields at rest (see field_cipher).
        `hash_alg` makes the content hashes of records written (SM3 under the GM suite);
        each row's hash names its algorithm, so rows of either kind are read alike."""
        self._database = database
        self._cipher = cipher
        self.hash_alg = hash_alg

    def upsert_records(
        self,
        adapter_id: str,
        department: str,
        records: Sequence[SourceRecord],
        fetched_at: datetime,
    ) -> list[StoredRecord]:
        """Insert or update `records` fetched from `adapter_id` at `fetched_at`.

        Idempotent: a record is keyed by ``(adapter_id, record_type, source_record_id)``;
        storing it again overwrites its fields, content hash, subject, keys and fetch
        time and clears a withdrawal. A record repeated within `records` is stored once,
        the last copy winning. Everything happens in one transaction.

        Returns one `StoredRecord` per distinct record, in the order first seen.

        Raises:
            InvalidRequest: a record's fields are not representable as canonical JSON.
            ValueError: `fetched_at` or a record's `updated_at` is a naive datetime.
            StoreError: the database failed or is unreachable; nothing was stored.
        """
        if not records:
            return []
        with self._database.transaction() as session:
            return upsert_records_in(
                session,
                adapter_id,
                department,
                records,
                fetched_at,
                cipher=self._cipher,
                hash_alg=self.hash_alg,
            )

    def upsert_batches(self, batches: Sequence[RecordBatch]) -> None:
        """Store several adapters' answers in one transaction (see `upsert_records`).

        Raises `InvalidRequest`, `ValueError` and `StoreError` as `upsert_records` does;
        on any of them nothing of the batches is stored.
        """
        with self._database.transaction() as session:
            for batch in batches:
                upsert_records_in(
                    session,
                    batch.adapter_id,
                    batch.department,
                    batch.records,
                    batch.fetched_at,
                    cipher=self._cipher,
                    hash_alg=self.hash_alg,
                )

    def find(
        self,
        subject: SubjectKey,
        record_types: Collection[str] | None = None,
        adapter_ids: Collection[str] | None = None,
        fetched_since: datetime | None = None,
    ) -> list[StoredRecord]:
        """Return the records filed under `subject`, newest fetch first; never withdrawn ones.

        `record_types` and `adapter_ids` filter when given: None means any, an empty
        collection matches nothing. `fetched_since` keeps records fetched at or after it.

        Raises:
            ValueError: `fetched_since` is a naive datetime.
            StoreError: the database failed or is unreachable, or holds a key kind this
                code does not know.
        """
        # The plan starts from record_keys' (kind, value, record_id) index and reads each
        # record by primary key, so its cost does not grow with the store (a test checks
        # the plan on every backend).
        statement = (
            sa.select(RecordRow)
            .select_from(RecordKeyRow)
            .join(RecordRow, RecordRow.id == RecordKeyRow.record_id)
            .where(
                RecordKeyRow.kind == subject.kind.value,
                RecordKeyRow.value == subject.value,
                RecordRow.withdrawn_at.is_(None),
            )
            .order_by(RecordRow.fetched_at.desc(), RecordRow.id.desc())
        )
        if record_types is not None:
            statement = statement.where(RecordRow.record_type.in_(list(record_types)))
        if adapter_ids is not None:
            statement = statement.where(RecordRow.adapter_id.in_(list(adapter_ids)))
        if fetched_since is not None:
            statement = statement.where(
                RecordRow.fetched_at >= _utc("fetched_since", fetched_since)
            )
        with self._database.transaction(readonly=True) as session:
            rows = list(session.scalars(statement))
            found = [_to_stored(row, self._cipher) for row in rows]
            stale = [
                (row.id, record)
                for row, record in zip(rows, found, strict=True)
                if self._cipher is not None and not self._cipher.is_current(row.fields)
            ]
        if stale:
            self._reseal(stale)
        return found

    def _reseal(self, records: Sequence[tuple[int, StoredRecord]]) -> None:
        """Seal rows stored under an older key (or in clear) under the active key."""
        assert self._cipher is not None
        with self._database.transaction() as session:
            for row_id, record in records:
                context = record_context(
                    record.adapter_id, record.record_type, record.source_record_id
                )
                session.execute(
                    sa.update(RecordRow)
                    .where(RecordRow.id == row_id)
                    .values(fields=self._cipher.seal(record.fields, context))
                )


def upsert_records_in(
    session: Session,
    adapter_id: str,
    department: str,
    records: Sequence[SourceRecord],
    fetched_at: datetime,
    *,
    cipher: FieldCipher | None = None,
    hash_alg: HashAlg = HashAlg.SHA256,
) -> list[StoredRecord]:
    """`RecordRepository.upsert_records` inside a unit of work the caller owns.

    For store code that must commit records together with something else (a sync
    job's batch and its cursor). The caller commits or rolls back.

    Raises:
        InvalidRequest: a record's fields are not representable as canonical JSON.
        ValueError: `fetched_at` or a record's `updated_at` is a naive datetime.
        sqlalchemy.exc.SQLAlchemyError: the database failed; `Database.transaction`
            converts it to `StoreError`.
    """
    fetched_at = _utc("fetched_at", fetched_at)
    prepared: dict[tuple[str, str], _Prepared] = {}
    for record in records:
        item = _prepare(adapter_id, department, record, fetched_at, cipher, hash_alg)
        prepared[item.identity] = item
    # Writing in one global order makes concurrent upserts of overlapping records take
    # their row locks in the same order, so PostgreSQL cannot deadlock them.
    ordered = sorted(prepared.values(), key=lambda item: item.identity)
    for batch in _batches(ordered, UPSERT_BATCH_SIZE):
        insert = insert_for(session, RecordRow).values([item.row for item in batch])
        upsert = insert.on_conflict_do_update(
            index_elements=["adapter_id", "record_type", "source_record_id"],
            set_={column: insert.excluded[column] for column in _UPDATED_COLUMNS},
        ).returning(RecordRow.id, RecordRow.record_type, RecordRow.source_record_id)
        record_ids = {
            (record_type, source_record_id): record_id
            for record_id, record_type, source_record_id in session.execute(upsert)
        }
        # Keys are rewritten whole: a record's subject or related keys may have changed.
        session.execute(
            sa.delete(RecordKeyRow).where(RecordKeyRow.record_id.in_(record_ids.values()))
        )
        key_rows: list[dict[str, Any]] = []
        for item in batch:
            record_id = record_ids[item.identity]
            key_rows.extend(
                {"record_id": record_id, "kind": key.kind.value, "value": key.value}
                for key in item.filing_keys
            )
        session.execute(sa.insert(RecordKeyRow), key_rows)
    return [item.stored for item in prepared.values()]


def _prepare(
    adapter_id: str,
    department: str,
    record: SourceRecord,
    fetched_at: datetime,
    cipher: FieldCipher | None = None,
    hash_alg: HashAlg = HashAlg.SHA256,
) -> _Prepared:
    stored = StoredRecord.of(
        record,
        adapter_id=adapter_id,
        department=department,
        fetched_at=fetched_at,
        hash_alg=hash_alg,
    )
    updated_at = None if record.updated_at is None else _utc("updated_at", record.updated_at)
    row = {
        "adapter_id": adapter_id,
        "department": department,
        "record_type": record.record_type,
        "source_record_id": record.source_record_id,
        "subject_kind": record.subject.kind.value,
        "subject_value": record.subject.value,
        "related_subjects": [
            {"kind": key.kind.value, "value": key.value} for key in record.related_subjects
        ],
        "fields": stored.fields
        if cipher is None
        else cipher.seal(
            stored.fields, record_context(adapter_id, record.record_type, record.source_record_id)
        ),
        "content_hash": stored.content_hash,
        "fetched_at": fetched_at,
        "source_updated_at": updated_at,
        "withdrawn_at": None,
    }
    identity = (record.record_type, record.source_record_id)
    return _Prepared(identity, row, _filing_keys(record), stored)


def _filing_keys(record: SourceRecord) -> frozenset[SubjectKey]:
    named = (record.subject, *record.related_subjects)
    return frozenset(named).union(*(key.related() for key in named))


def _to_stored(row: RecordRow, cipher: FieldCipher | None = None) -> StoredRecord:
    fields = row.fields
    if cipher is not None:
        fields = cipher.open(
            fields, record_context(row.adapter_id, row.record_type, row.source_record_id)
        )
    return StoredRecord(
        record_type=row.record_type,
        subject=_subject_key(row.subject_kind, row.subject_value),
        fields=fields,
        adapter_id=row.adapter_id,
        department=row.department,
        source_record_id=row.source_record_id,
        fetched_at=row.fetched_at,
        content_hash=row.content_hash,
        related_subjects=tuple(
            _subject_key(item["kind"], item["value"]) for item in row.related_subjects
        ),
    )


def _subject_key(kind: str, value: str) -> SubjectKey:
    try:
        return SubjectKey(KeyKind(kind), value)
    except ValueError as exc:
        raise StoreError(f"stored record has an unknown key kind {kind!r}") from exc


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _batches(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- bulk writes for sync jobs --------------------------------------------------------------
# Sync jobs move whole change streams: they skip records whose stored copy is identical
# and need the row ids of every record they saw (FULL jobs mark them as still present).

__all__ += [
    "ChangedRecords",
    "PreparedRecord",
    "cipher_of",
    "prepare_records",
    "withdraw_records_in",
    "write_changed_records_in",
]

_Identity = tuple[str, str]
"""(record type, source record id) of one adapter's record."""

_IDENTITY_CHUNK: Final = 500
"""Identities per ``IN (...)`` lookup; well under every bound-parameter limit."""

_RECORDS_TABLE: Final = RecordRow.metadata.tables["records"]
_RECORD_KEYS_TABLE: Final = RecordRow.metadata.tables["record_keys"]


@dataclass(frozen=True)
class PreparedRecord:
    """A record as its `records` row and filing keys, ready for `write_changed_records_in`."""

    identity: _Identity
    # Its "fields" hold the canonical JSON (RFC 8785) that the content hash is over.
    row: dict[str, Any]
    filing_keys: frozenset[SubjectKey]
    fields: dict[str, Any]


@dataclass(frozen=True)
class _JsonText:
    """A JSON column value serialized already: bound as text, not serialized again."""

    text: str


@dataclass(frozen=True)
class ChangedRecords:
    """What `write_changed_records_in` did."""

    # The row id of every record it was given, written or not.
    record_ids: dict[_Identity, int]
    # Records inserted, rewritten or revived (no longer withdrawn).
    applied: tuple[_Identity, ...]
    # Records whose stored copy was identical: not written.
    unchanged: int


def prepare_records(
    adapter_id: str,
    department: str,
    records: Sequence[SourceRecord],
    fetched_at: datetime,
    hash_alg: HashAlg = HashAlg.SHA256,
) -> list[PreparedRecord]:
    """Turn `records` into rows, without touching the database (run it outside the
    transaction: hashing is the costly part). Fields stay plain until written.

    A record repeated within `records` is kept once, the last copy winning. The result
    is in identity order, the order writers take row locks in.

    Raises:
        InvalidRequest: a record's fields are not representable as canonical JSON.
        ValueError: `fetched_at` or a record's `updated_at` is a naive datetime.
    """
    fetched_at = _utc("fetched_at", fetched_at)
    prepared: dict[_Identity, PreparedRecord] = {}
    for record in records:
        fields = dict(record.fields)
        identity = (record.record_type, record.source_record_id)
        updated_at = record.updated_at
        canonical = canonical_json(fields)
        row = {
            "adapter_id": adapter_id,
            "department": department,
            "record_type": record.record_type,
            "source_record_id": record.source_record_id,
            "subject_kind": record.subject.kind.value,
            "subject_value": record.subject.value,
            "related_subjects": [
                {"kind": key.kind.value, "value": key.value} for key in record.related_subjects
            ],
            "fields": _JsonText(canonical.decode()),
            # = domain.records.content_hash(fields), from the one serialization.
            "content_hash": hash_alg.tagged(canonical),
            "fetched_at": fetched_at,
            "source_updated_at": None if updated_at is None else _utc("updated_at", updated_at),
            "withdrawn_at": None,
        }
        prepared[identity] = PreparedRecord(identity, row, _filing_keys(record), fields)
    return [prepared[identity] for identity in sorted(prepared)]


def write_changed_records_in(
    session: Session,
    adapter_id: str,
    prepared: Sequence[PreparedRecord],
    *,
    cipher: FieldCipher | None = None,
) -> ChangedRecords:
    """Insert new records, rewrite changed or withdrawn ones, leave identical ones alone.

    A stored record is identical when its content hash, subject, related keys and
    department are the same and it is not withdrawn; its fetch time then stays as it
    was. `cipher`, when given, seals the fields written. Runs inside the caller's unit
    of work (see `upsert_records_in`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed; `Database.transaction`
            converts it to `StoreError`.
    """
    connection = session.connection()
    stored = _stored_versions(connection, adapter_id, [item.identity for item in prepared])
    record_ids: dict[_Identity, int] = {}
    to_write: list[PreparedRecord] = []
    unchanged = 0
    for item in prepared:
        version = stored.get(item.identity)
        if version is not None and _is_identical(version[1], item.row):
            record_ids[item.identity] = version[0]
            unchanged += 1
        else:
            to_write.append(item)
    if to_write:
        written = _upsert_returning_ids(connection, [_sealed(item, cipher) for item in to_write])
        record_ids.update(written)
        keys = _RECORD_KEYS_TABLE
        # Keys of stored records are rewritten whole: the subject or related keys may
        # have changed. New records have none (a concurrent writer's are kept: the key
        # insert skips what exists).
        rewritten = [written[item.identity] for item in to_write if item.identity in stored]
        for chunk in _batches(rewritten, _IDENTITY_CHUNK):
            connection.execute(sa.delete(keys).where(keys.c.record_id.in_(chunk)))
        _insert_keys(
            connection,
            [
                (written[item.identity], key.kind.value, key.value)
                for item in to_write
                for key in item.filing_keys
            ],
            # The records' COPY made the staging tables in this transaction already.
            staged=_bulk_upsert_for(connection.dialect).copies(len(to_write)),
        )
    return ChangedRecords(record_ids, tuple(item.identity for item in to_write), unchanged)


def withdraw_records_in(
    session: Session, adapter_id: str, identities: Sequence[_Identity], withdrawn_at: datetime
) -> int:
    """Mark `adapter_id`'s records named by `identities` withdrawn at `withdrawn_at`.

    Records are kept (a lookup no longer finds them); already withdrawn and unknown
    ones are left alone. Returns how many were withdrawn now.

    Raises:
        ValueError: `withdrawn_at` is a naive datetime.
        sqlalchemy.exc.SQLAlchemyError: the database failed; `Database.transaction`
            converts it to `StoreError`.
    """
    withdrawn_at = _utc("withdrawn_at", withdrawn_at)
    if not identities:
        return 0
    connection = session.connection()
    count = 0
    with _custom_plans(connection):
        for record_type, source_ids in _by_record_type(identities):
            for chunk in _batches(source_ids, _IDENTITY_CHUNK):
                result = connection.execute(
                    sa.update(RecordRow)
                    .where(
                        RecordRow.adapter_id == adapter_id,
                        RecordRow.record_type == record_type,
                        RecordRow.source_record_id.in_(chunk),
                        RecordRow.withdrawn_at.is_(None),
                    )
                    .values(withdrawn_at=withdrawn_at)
                )
                count += result.rowcount
    return count


def _insert_keys(
    connection: sa.Connection, rows: list[tuple[int, str, str]], *, staged: bool = False
) -> None:
    """Insert record keys with one driver executemany, or on PostgreSQL, from
    `_COPY_FROM_ROWS` rows on, with COPY into a staging table and one INSERT … SELECT
    (see `_upsert_returning_ids`). `staged`: this transaction made the staging tables."""
    writer = _bulk_upsert_for(connection.dialect)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if writer.copies(len(rows)):
            if not staged:
                cursor.execute(_STAGES_SQL)
            with cursor.copy(_KEYS_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(_KEYS_FROM_STAGE_SQL)
        else:
            cursor.executemany(writer.keys_sql, writer.key_parameters(rows))
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            "bulk insert of record keys", None, exc, connection.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()


def _sealed(item: PreparedRecord, cipher: FieldCipher | None) -> dict[str, Any]:
    if cipher is None:
        return item.row
    context = record_context(item.row["adapter_id"], *item.identity)
    return {**item.row, "fields": cipher.seal(item.fields, context)}


def _upsert_returning_ids(
    connection: sa.Connection, rows: list[dict[str, Any]]
) -> dict[_Identity, int]:
    """Upsert `rows`; return the row id of each.

    The statement is SQLAlchemy's dialect upsert, compiled once per dialect and shape;
    values go through the columns' own bind processors, so they are stored exactly as
    an ORM write would store them. Only the per-row parameter handling is left to the
    driver: SQLite runs multi-row ``VALUES`` with ``RETURNING``. PostgreSQL, from
    `_COPY_FROM_ROWS` rows on, COPYs them into a session-private staging table and
    moves them with one ``INSERT … SELECT … ON CONFLICT``; fewer rows (a lookup's) go
    by an executemany that returns each row's id (pipelined).
    """
    writer = _bulk_upsert_for(connection.dialect)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    found: dict[_Identity, int] = {}
    try:
        if writer.copies(len(rows)):
            cursor.execute(_STAGES_SQL)
            with cursor.copy(_RECORDS_COPY_SQL) as copy:
                for values in writer.processed(rows):
                    copy.write_row(values)
            cursor.execute(_RECORDS_FROM_STAGE_SQL)
            for record_id, record_type, source_record_id in cursor.fetchall():
                found[(record_type, source_record_id)] = record_id
        elif writer.rows_per_statement > 1:
            for chunk in _batches(rows, writer.rows_per_statement):
                cursor.execute(writer.sql_for(len(chunk)), writer.flat_parameters(chunk))
                for record_id, record_type, source_record_id in cursor.fetchall():
                    found[(record_type, source_record_id)] = record_id
        else:
            cursor.executemany(writer.sql_for(1), writer.named_parameters(rows), returning=True)
            while True:
                for record_id, record_type, source_record_id in cursor.fetchall():
                    found[(record_type, source_record_id)] = record_id
                if not cursor.nextset():
                    break
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            "bulk upsert of records", None, exc, connection.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()
    return found


_UPSERT_COLUMNS: Final = (
    "adapter_id",
    "department",
    "record_type",
    "source_record_id",
    "subject_kind",
    "subject_value",
    "related_subjects",
    "fields",
    "content_hash",
    "fetched_at",
    "source_updated_at",
    "withdrawn_at",
)
_RELATED_POSITION: Final = _UPSERT_COLUMNS.index("related_subjects")
_SQLITE_ROWS_PER_STATEMENT: Final = 500
"""12 columns x 500 rows stays far below SQLite's 32,766 bound parameters."""

# PostgreSQL bulk path: COPY into a temporary table, then one INSERT … SELECT. The
# staging tables are the session's own (created on first use, emptied at commit and by
# the statement that reads them), so concurrent writers never see each other's rows.
# Rows go in identity order, the order every writer takes row locks in.
_COPY_FROM_ROWS: Final = 64
"""Below this many rows, COPY's extra round trips cost more than they save."""
_RECORDS_STAGE: Final = "tongban_records_stage"
_KEYS_STAGE: Final = "tongban_record_keys_stage"
_COLUMN_LIST: Final = ", ".join(_UPSERT_COLUMNS)
# Both in one round trip (no parameters: psycopg sends it as a simple query).
_STAGES_SQL: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_RECORDS_STAGE} ON COMMIT DELETE ROWS "
    f"AS SELECT {_COLUMN_LIST} FROM records WITH NO DATA; "
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_KEYS_STAGE} ON COMMIT DELETE ROWS "
    "AS SELECT record_id, kind, value FROM record_keys WITH NO DATA"
)
_RECORDS_COPY_SQL: Final = f"COPY {_RECORDS_STAGE} ({_COLUMN_LIST}) FROM STDIN"
_RECORDS_FROM_STAGE_SQL: Final = (
    f"WITH staged AS (DELETE FROM {_RECORDS_STAGE} RETURNING *) "
    f"INSERT INTO records ({_COLUMN_LIST}) "
    f"SELECT {_COLUMN_LIST} FROM staged ORDER BY record_type, source_record_id "
    "ON CONFLICT (adapter_id, record_type, source_record_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _UPDATED_COLUMNS)
    + " RETURNING id, record_type, source_record_id"
)
_KEYS_COPY_SQL: Final = f"COPY {_KEYS_STAGE} (record_id, kind, value) FROM STDIN"
_KEYS_FROM_STAGE_SQL: Final = (
    f"WITH staged AS (DELETE FROM {_KEYS_STAGE} RETURNING *) "
    "INSERT INTO record_keys (record_id, kind, value) "
    "SELECT record_id, kind, value FROM staged ORDER BY record_id, kind, value "
    "ON CONFLICT DO NOTHING"
)


class _BulkUpsert:
    """The records upsert compiled for one dialect, with the columns' bind processors."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.rows_per_statement = _SQLITE_ROWS_PER_STATEMENT if dialect.name == "sqlite" else 1
        self._copies = dialect.name == "postgresql"
        table = _RECORDS_TABLE
        # (column position, processor, whether the processor maps None to None).
        self._processors: list[tuple[int, Callable[[Any], Any], bool]] = []
        for position, name in enumerate(_UPSERT_COLUMNS):
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors.append((position, processor, processor(None) is None))
        self._sql: dict[int, tuple[str, list[int]]] = {}
        related = table.c.related_subjects.type.dialect_impl(dialect).bind_processor(dialect)
        self._no_related = [] if related is None else related([])
        dialect_insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
        compiled_keys = (
            dialect_insert(_RECORD_KEYS_TABLE)
            .on_conflict_do_nothing()
            .compile(dialect=dialect, column_keys=["record_id", "kind", "value"])
        )
        self.keys_sql = compiled_keys.string
        self.keys_named = compiled_keys.positiontup is None

    def copies(self, rows: int) -> bool:
        """Whether `rows` rows go by COPY and a staging table (PostgreSQL, enough rows)."""
        return self._copies and rows >= _COPY_FROM_ROWS

    def sql_for(self, rows: int) -> str:
        if rows not in self._sql:
            self._sql[rows] = self._compile(rows)
        return self._sql[rows][0]

    def _compile(self, rows: int) -> tuple[str, list[int]]:
        table = _RECORDS_TABLE
        dialect_insert = sqlite.insert if self.dialect.name == "sqlite" else postgresql.insert
        values = [
            {
                name: sa.bindparam(f"{name}__{row}", type_=table.c[name].type)
                for name in _UPSERT_COLUMNS
            }
            for row in range(rows)
        ]
        insert = dialect_insert(table).values(values if rows > 1 else values[0])
        upsert = insert.on_conflict_do_update(
            index_elements=["adapter_id", "record_type", "source_record_id"],
            set_={column: insert.excluded[column] for column in _UPDATED_COLUMNS},
        ).returning(table.c.id, table.c.record_type, table.c.source_record_id)
        compiled = upsert.compile(dialect=self.dialect)
        order: list[int] = []
        if compiled.positiontup is not None:
            columns = {name: index for index, name in enumerate(_UPSERT_COLUMNS)}
            for parameter in compiled.positiontup:
                name, _, row = parameter.rpartition("__")
                order.append(int(row) * len(_UPSERT_COLUMNS) + columns[name])
        return compiled.string, order

    def processed(self, rows: list[dict[str, Any]]) -> Iterator[list[Any]]:
        """Each row's values in `_UPSERT_COLUMNS` order, through the bind processors."""
        # A batch shares its fetch time: each distinct value is processed once.
        seen: dict[tuple[int, int], Any] = {}
        for row in rows:
            values = [row[name] for name in _UPSERT_COLUMNS]
            for position, processor, keeps_none in self._processors:
                value = values[position]
                if value is None and keeps_none:
                    continue
                if isinstance(value, _JsonText):
                    # The compiled statement casts JSON parameters (::JSONB on psycopg).
                    values[position] = value.text
                elif position == _RELATED_POSITION and value == []:
                    values[position] = self._no_related
                elif isinstance(value, datetime):
                    key = (position, id(value))
                    if key not in seen:
                        seen[key] = (value, processor(value))
                    values[position] = seen[key][1]
                else:
                    values[position] = processor(value)
            yield values

    def flat_parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Positional parameters of `sql_for(len(rows))`."""
        flat = [value for values in self.processed(rows) for value in values]
        order = self._sql[len(rows)][1]
        return [flat[index] for index in order]

    def named_parameters(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Named parameters of `sql_for(1)`, one mapping per row."""
        names = [f"{name}__0" for name in _UPSERT_COLUMNS]
        return [dict(zip(names, values, strict=True)) for values in self.processed(rows)]

    def key_parameters(self, rows: list[tuple[int, str, str]]) -> list[Any]:
        """Parameters of `keys_sql` for (record id, kind, value) rows."""
        if self.keys_named:
            return [{"record_id": row[0], "kind": row[1], "value": row[2]} for row in rows]
        return rows


_BULK_UPSERTS: dict[str, _BulkUpsert] = {}


def _bulk_upsert_for(dialect: sa.Dialect) -> _BulkUpsert:
    writer = _BULK_UPSERTS.get(dialect.name)
    if writer is None or writer.dialect is not dialect:
        writer = _BULK_UPSERTS[dialect.name] = _BulkUpsert(dialect)
    return writer


def _is_identical(stored: tuple[Any, ...], row: dict[str, Any]) -> bool:
    """Whether the stored version (see `_stored_versions`) needs no rewrite for `row`."""
    digest, department, subject_kind, subject_value, related, withdrawn = stored
    if withdrawn or (digest, department, subject_kind, subject_value) != (
        row["content_hash"],
        row["department"],
        row["subject_kind"],
        row["subject_value"],
    ):
        return False
    wanted = row["related_subjects"]
    if related == "[]" or not related:
        return not wanted
    # Stored JSON text is spelled per dialect (JSONB adds spaces): compare it parsed.
    return bool(json.loads(related) == wanted)


def _stored_versions(
    connection: sa.Connection, adapter_id: str, identities: Sequence[_Identity]
) -> dict[_Identity, tuple[int, tuple[Any, ...]]]:
    """(id, version) of the stored records among `identities`, for `_is_identical`.

    Related keys come as JSON text and withdrawal as a flag: no JSON or timestamp
    is decoded for the common case of an identical record.
    """
    found: dict[_Identity, tuple[int, tuple[Any, ...]]] = {}
    if not identities:
        return found
    # One array parameter holds any number of ids; SQLite binds each id on its own.
    chunk_size = len(identities) if connection.dialect.name == "postgresql" else _IDENTITY_CHUNK
    with _custom_plans(connection):
        for record_type, source_ids in _by_record_type(identities):
            for chunk in _batches(source_ids, chunk_size):
                rows = connection.execute(
                    sa.select(
                        RecordRow.source_record_id,
                        RecordRow.id,
                        RecordRow.content_hash,
                        RecordRow.department,
                        RecordRow.subject_kind,
                        RecordRow.subject_value,
                        sa.cast(RecordRow.related_subjects, sa.Text),
                        RecordRow.withdrawn_at.is_not(None),
                    ).where(
                        RecordRow.adapter_id == adapter_id,
                        RecordRow.record_type == record_type,
                        _one_of(connection, RecordRow.source_record_id, chunk),
                    )
                )
                for source_record_id, record_id, *version in rows:
                    found[(record_type, source_record_id)] = (record_id, tuple(version))
    return found


def _one_of(
    connection: sa.Connection, column: InstrumentedAttribute[str], values: list[str]
) -> sa.ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``= ANY(array)``, one parameter, not many."""
    if connection.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.Text)))
    return column.in_(values)


@contextmanager
def _custom_plans(connection: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, plan the statements run inside for their actual parameters.

    psycopg prepares a statement run often; PostgreSQL may then settle on a generic
    plan made while `records` was nearly empty (a sequential scan), and keep using it
    after a bulk load has filled the table: every lookup would scan it whole.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    try:
        yield
    finally:
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = auto")


def _by_record_type(identities: Sequence[_Identity]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for record_type, source_record_id in identities:
        grouped.setdefault(record_type, []).append(source_record_id)
    return list(grouped.items())


def cipher_of(repository: RecordRepository) -> FieldCipher | None:
    """The cipher `repository` seals record fields with, for writers that share it."""
    return repository._cipher
