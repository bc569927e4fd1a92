"""The store's error boundary and health check on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from certstore import migrate
from certstore.database import Database
from certstore.models import SyncCursorRow
from certstore.records import RecordRepository
from domain.errors import StoreError
from domain.subjects import KeyKind, SubjectKey

UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def cursor_count(database: Database) -> int:
    with database.transaction(readonly=True) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(SyncCursorRow)) or 0


def test_ping_answers_true_on_a_live_database(database: Database) -> None:
    assert database.ping() is True


def test_unreachable_database_raises_store_error_not_sqlalchemy() -> None:
    database = Database.from_url(UNREACHABLE_URL)

    assert database.ping() is False
    with pytest.raises(StoreError) as raised:
        RecordRepository(database).find(SubjectKey(KeyKind.ID_CARD, "11010519491231002X"))
    assert isinstance(raised.value.__cause__, SQLAlchemyError)
    with pytest.raises(StoreError):
        migrate.upgrade(UNREACHABLE_URL)
    with pytest.raises(StoreError):
        migrate.current(UNREACHABLE_URL)


def test_transaction_commits_when_the_block_ends(database: Database) -> None:
    with database.transaction() as session:
        session.add(SyncCursorRow(adapter_id="a", cursor="c1", updated_at=NOW))

    assert cursor_count(database) == 1


def test_transaction_rolls_back_and_passes_on_the_blocks_own_error(database: Database) -> None:
    def add_then_fail() -> None:
        with database.transaction() as session:
            session.add(SyncCursorRow(adapter_id="a", cursor="c1", updated_at=NOW))
            session.flush()
            raise KeyError("boom")

    with pytest.raises(KeyError):
        add_then_fail()

    assert cursor_count(database) == 0


def test_sql_errors_become_store_errors_and_roll_back(database: Database) -> None:
    def add_then_query_a_missing_table() -> None:
        with database.transaction() as session:
            session.add(SyncCursorRow(adapter_id="a", cursor="c1", updated_at=NOW))
            session.flush()
            session.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(StoreError, match="database error") as raised:
        add_then_query_a_missing_table()

    assert isinstance(raised.value.__cause__, SQLAlchemyError)
    assert cursor_count(database) == 0


def test_constraint_violation_on_commit_is_a_store_error(database: Database) -> None:
    with database.transaction() as session:
        session.add(SyncCursorRow(adapter_id="a", cursor="c1", updated_at=NOW))

    with pytest.raises(StoreError), database.transaction() as session:
        session.add(SyncCursorRow(adapter_id="a", cursor="c2", updated_at=NOW))

    assert cursor_count(database) == 1


def test_store_error_messages_do_not_repeat_row_values(database: Database) -> None:
    identifier = "11010519491231002X"
    with database.transaction() as session:
        session.add(SyncCursorRow(adapter_id=identifier, cursor="c", updated_at=NOW))

    with pytest.raises(StoreError) as raised, database.transaction() as session:
        session.add(SyncCursorRow(adapter_id=identifier, cursor="c", updated_at=NOW))

    assert identifier not in str(raised.value)
