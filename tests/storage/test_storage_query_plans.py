"""The store's hot reads use plans whose cost does not grow with the store.

Each test captures the SQL a repository method really runs and asks the database for
its plan (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL, after ANALYZE). A
lookup by subject must start from the subject's key in `record_keys` and read records
by primary key, never scan one adapter's rows from the records' unique index; a
holder's certificates must come from the holder index in order, without a sort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from certstore import migrate
from certstore.certificate_models import CertificateRow, SigningKeyRow
from certstore.certificates import CertificateStore, HolderQuery
from certstore.database import Database
from certstore.records import RecordRepository
from domain.records import SourceRecord
from domain.subjects import KeyKind, SubjectKey
from signing.errors import MalformedToken

FETCHED_AT = datetime(2026, 3, 1, tzinfo=UTC)
RECORDS = 2_000


@pytest.fixture
def migrated(database_url: str, database: Database) -> Database:
    migrate.upgrade(database_url)
    return database


@contextmanager
def _captured(database: Database, table: str) -> Iterator[list[tuple[str, Any]]]:
    """Collect the (SQL, parameters) of every SELECT that reads `table`."""
    statements: list[tuple[str, Any]] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and table in statement:
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", before)


def _plan(database: Database, statement: str, parameters: Any) -> str:
    with database.engine.connect() as connection:
        if database.dialect_name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in rows)


def _fill_records(database: Database) -> SubjectKey:
    """One adapter's records for many subjects; returns one subject in the middle."""
    repository = RecordRepository(database)
    subjects = [SubjectKey(KeyKind.ORG_CODE, f"{n:08d}-X") for n in range(RECORDS)]
    repository.upsert_records(
        "population",
        "dept",
        [SourceRecord("resident", f"R-{n}", key, {"n": n}) for n, key in enumerate(subjects)],
        FETCHED_AT,
    )
    _analyze(database)
    return subjects[RECORDS // 2]


def _analyze(database: Database) -> None:
    if database.dialect_name == "postgresql":
        with database.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def _only_plan(database: Database, table: str, read: Callable[[], object]) -> str:
    # Certificate rows are written raw, without a signed token: only the plan counts.
    with _captured(database, table) as statements, suppress(MalformedToken):
        read()
    assert len(statements) == 1, statements
    return _plan(database, *statements[0])


def test_find_starts_from_the_subjects_key(migrated: Database) -> None:
    subject = _fill_records(migrated)
    repository = RecordRepository(migrated)

    # The way a Lookup served from the store asks: one adapter, its types, a staleness.
    plan = _only_plan(
        migrated,
        "record_keys",
        lambda: repository.find(
            subject,
            ["resident"],
            adapter_ids=["population"],
            fetched_since=FETCHED_AT - timedelta(hours=1),
        ),
    )

    if migrated.dialect_name == "sqlite":
        first, second, *_ = plan.splitlines()
        assert "record_keys USING COVERING INDEX ix_record_keys_kind_value_record_id" in first
        assert "SEARCH records USING INTEGER PRIMARY KEY" in second
    else:
        assert "ix_record_keys_kind_value_record_id" in plan
        assert "pk_records" in plan
    assert "uq_records_adapter_id_record_type_source_record_id" not in plan
    assert "sqlite_autoindex_records" not in plan
    assert "Seq Scan" not in plan
    assert repository.find(subject, ["resident"], adapter_ids=["population"])


def test_find_by_subject_alone_starts_from_the_subjects_key(migrated: Database) -> None:
    subject = _fill_records(migrated)
    repository = RecordRepository(migrated)

    plan = _only_plan(migrated, "record_keys", lambda: repository.find(subject))

    assert "ix_record_keys_kind_value_record_id" in plan
    assert "Seq Scan" not in plan
    assert "SCAN records" not in plan


def _fill_certificates(database: Database) -> str:
    """Certificates of many holders, written as rows; returns one holder in the middle."""
    holders = [f"9132010{n:010d}X" for n in range(RECORDS // 10)]
    with database.engine.begin() as connection:
        connection.execute(
            sa.insert(SigningKeyRow.__table__),
            {
                "kid": "kid-1",
                "owner": "91320100MA1FL8XQ1A",
                "issuer_department": "dept",
                "alg": "EdDSA",
                "public_jwk": {},
                "material_kind": "hsm",
                "private_material": "slot-1",
                "status": "active",
                "not_before": FETCHED_AT,
                "not_after": None,
                "compromised_since": None,
                "created_at": FETCHED_AT,
            },
        )
        connection.execute(
            sa.insert(CertificateRow.__table__),
            [
                {
                    "id": f"cert-{n}",
                    "type_code": "T1",
                    "issuer_uscc": "91320100MA1FL8XQ1A",
                    "serial": str(n),
                    "version": 1,
                    "holder_kind": "USCC",
                    "holder_value": holders[n % len(holders)],
                    "issued_at": FETCHED_AT + timedelta(seconds=n),
                    "valid_from": FETCHED_AT,
                    "valid_until": None,
                    "predecessor_id": None,
                    "successor_id": None,
                    "status": "VALID" if n % 7 else "REVOKED",
                    "status_reason": "",
                    "status_changed_at": FETCHED_AT,
                    "status_list_index": n,
                    "kid": "kid-1",
                    "token": "x",
                    "request_id": f"req-{n}",
                    "request_fingerprint": "f",
                }
                for n in range(RECORDS)
            ],
        )
    _analyze(database)
    return holders[len(holders) // 2]


def test_list_by_holder_reads_the_holder_index_in_order(migrated: Database) -> None:
    holder = _fill_certificates(migrated)
    store = CertificateStore(migrated)

    plan = _only_plan(
        migrated,
        "certificates",
        lambda: store.list_by_holder(HolderQuery("USCC", holder, limit=20)),
    )

    assert "ix_certificates_holder_kind_holder_value_issued_at_id" in plan
    assert "TEMP B-TREE" not in plan
    assert "Seq Scan" not in plan
