"""Migrations on every backend: up, down and up again, and agreement with the models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from certstore import migrate
from certstore.database import Database, create_engine_for
from certstore.models import Base, RecordKeyRow
from certstore.records import RecordRepository
from domain.errors import StoreError
from domain.records import SourceRecord
from domain.subjects import KeyKind, SubjectKey

TABLES = set(Base.metadata.tables)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def schema_diffs(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_form_one_numbered_chain() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert scripts.get_heads() == [migrate.head()]
    chain = [s.revision for s in scripts.walk_revisions("base", "heads")][::-1]
    # Revision ids are "NNNN" or "NNNN_slug", numbered 1, 2, 3 ... without a gap.
    assert all(re.fullmatch(r"\d{4}(_[a-z0-9_]+)?", revision) for revision in chain)
    assert [revision[:4] for revision in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]


def test_upgrade_from_empty_to_head(database_url: str, engine: Engine) -> None:
    assert migrate.current(database_url) is None
    assert table_names(engine) == set()

    migrate.upgrade(database_url)

    assert migrate.current(database_url) == migrate.head()
    assert table_names(engine) == TABLES | {"alembic_version"}


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)

    assert migrate.current(database_url) == migrate.head()


def test_down_to_base_and_up_again(database_url: str, engine: Engine) -> None:
    migrate.upgrade(database_url)

    migrate.downgrade(database_url, "base")

    assert migrate.current(database_url) is None
    assert table_names(engine) == {"alembic_version"}

    migrate.upgrade(database_url)

    assert migrate.current(database_url) == migrate.head()
    assert schema_diffs(engine) == []


def test_migrated_schema_matches_the_models(database_url: str, engine: Engine) -> None:
    migrate.upgrade(database_url)

    assert schema_diffs(engine) == []


def test_models_differ_from_an_empty_database(engine: Engine) -> None:
    # Guards the agreement test itself: compare_metadata must see missing tables.
    diffs = schema_diffs(engine)

    assert {diff[1].name for diff in diffs if isinstance(diff, tuple)} >= TABLES


def test_unknown_revision_is_a_store_error(database_url: str) -> None:
    with pytest.raises(StoreError, match="migration failed"):
        migrate.upgrade(database_url, "9999")


def test_constraints_are_named(database_url: str, engine: Engine) -> None:
    migrate.upgrade(database_url)
    inspector = sa.inspect(engine)

    assert inspector.get_pk_constraint("records")["name"] == "pk_records"
    assert [uq["name"] for uq in inspector.get_unique_constraints("records")] == [
        "uq_records_adapter_id_record_type_source_record_id"
    ]
    assert [fk["name"] for fk in inspector.get_foreign_keys("record_keys")] == [
        "fk_record_keys_record_id_records"
    ]
    assert {ix["name"] for ix in inspector.get_indexes("record_keys")} == {
        "ix_record_keys_kind_value_record_id"
    }


def test_sqlite_batch_migrations_keep_rows_that_point_at_a_copied_table(tmp_path: Path) -> None:
    # A batch migration copies `records` and drops the original; with foreign keys on,
    # the drop would cascade-delete every `record_keys` row.
    url = f"sqlite:///{tmp_path / 'tongban.db'}"
    migrate.upgrade(url)
    database = Database.from_url(url)
    RecordRepository(database).upsert_records(
        "src",
        "dept",
        [SourceRecord("licence", "L-1", SubjectKey(KeyKind.USCC, "91320100MA1FL8XQ1A"), {})],
        datetime(2026, 3, 1, tzinfo=UTC),
    )

    def recreate_records_table(config: Config) -> None:
        context = MigrationContext.configure(config.attributes["connection"])
        with Operations(context).batch_alter_table("records", recreate="always"):
            pass

    migrate._run(url, recreate_records_table)

    with database.transaction(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RecordKeyRow)) == 2
    database.dispose()
