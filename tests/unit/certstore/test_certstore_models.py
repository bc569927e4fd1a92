"""Portable column types and deterministic constraint names of the store's models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from certstore.database import create_engine_for
from certstore.models import Base, UTCDateTime

CHINA = timezone(timedelta(hours=8))
MOMENT = datetime(2026, 3, 1, 16, 0, tzinfo=CHINA)


def test_sqlite_stores_naive_utc_and_reads_back_aware_utc() -> None:
    column_type, dialect = UTCDateTime(), sqlite.dialect()

    stored = column_type.process_bind_param(MOMENT, dialect)
    read = column_type.process_result_value(stored, dialect)

    assert stored == datetime(2026, 3, 1, 8, 0)
    assert read == MOMENT
    assert read is not None
    assert read.tzinfo is UTC


def test_postgresql_stores_aware_utc_and_normalizes_reads_to_utc() -> None:
    column_type, dialect = UTCDateTime(), create_engine_for("postgresql://h/db").dialect

    stored = column_type.process_bind_param(MOMENT, dialect)
    read = column_type.process_result_value(MOMENT, dialect)

    assert stored == MOMENT
    assert stored is not None
    assert stored.tzinfo is UTC
    assert read is not None
    assert read.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 3, 1), sqlite.dialect())


def test_nulls_pass_through() -> None:
    assert UTCDateTime().process_bind_param(None, sqlite.dialect()) is None
    assert UTCDateTime().process_result_value(None, sqlite.dialect()) is None


def test_every_constraint_and_index_has_a_conventional_name() -> None:
    for table in Base.metadata.tables.values():
        names = {str(c.name) for c in table.constraints} | {str(i.name) for i in table.indexes}
        for name in names:
            prefix = name.split("_", 1)[0]
            assert prefix in {"pk", "uq", "ix", "fk", "ck"}, name
            assert name.startswith(f"{prefix}_{table.name}"), name
            assert len(name) <= 63, name  # PostgreSQL's identifier limit
    records = {str(c.name) for c in Base.metadata.tables["records"].constraints}
    assert records == {"pk_records", "uq_records_adapter_id_record_type_source_record_id"}
