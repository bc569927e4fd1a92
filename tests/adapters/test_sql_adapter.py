"""The `sql` adapter on a real department database: a SQLite file, PostgreSQL when
TONGBAN_TEST_DATABASE_URL is set (each test in a schema of its own), and MariaDB/MySQL
through PyMySQL when TONGBAN_TEST_MYSQL_URL is set (each test in a database of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.base import AdapterSpec, ChangeBatch, ChangeKind, Rejection
from adapters.factory import build_from_spec
from adapters.resilience import RetryPolicy
from adapters.sql_adapter import SqlAdapter
from domain.errors import AdapterError
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, parse_key

EXTRA_BACKENDS = ("mariadb",)
RESIDENT = "population.resident"
PURPOSE = Purpose("BJ-2024-0001", "户籍证明核验")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
ZHANG = parse_key(KeyKind.ID_CARD, "320106199003071234")
T0 = datetime(2024, 5, 1, 8, 0)
T1 = datetime(2024, 5, 2, 8, 0)
T2 = datetime(2024, 5, 3, 8, 0)
T3 = datetime(2024, 5, 4, 8, 0)

MAPPING = {
    "record_type": RESIDENT,
    "key_kind": "ID_CARD",
    "key_field": "sfzh",
    "id_field": "id",
    "field_map": {"name": "xm", "birth_date": "csrq", "city": "city", "allowance": "bt"},
    "field_types": {"birth_date": "date"},
    "updated_at_field": "updated_at",
    "deleted_field": "zx",
}

residents = sa.Table(
    "hj_resident",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sfzh", sa.String(40)),
    sa.Column("xm", sa.String(40)),
    sa.Column("csrq", sa.String(20)),  # the department stores dates as text
    sa.Column("city", sa.String(40)),
    sa.Column("bt", sa.Numeric(12, 2)),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("zx", sa.Boolean, nullable=False, default=False),
)

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "sfzh": "11010519491231002X",
        "xm": "王伟",
        "csrq": "1949/12/31",
        "bt": Decimal("1234.50"),
        "updated_at": T0,
    },
    {
        "id": 2,
        "sfzh": "１１０１０５１９４９１２３１００２ｘ",
        "xm": "王伟",
        "csrq": "1949-12-31",
        "updated_at": T0,
    },
    {"id": 3, "sfzh": "110105194912310021", "xm": "坏校验", "updated_at": T0},
    {"id": 4, "sfzh": "320106199003071234", "xm": "张敏", "csrq": "1990-13-45", "updated_at": T1},
    {"id": 5, "sfzh": "440304198511204567", "xm": "刘洋", "updated_at": T1, "zx": True},
    {"id": 6, "sfzh": None, "xm": "无证件", "updated_at": T1},
    {"id": 7, "sfzh": " 11010519491231002x ", "xm": "王伟", "city": "北京市", "updated_at": T2},
]


@pytest.fixture
def department_db(database_url: str) -> Iterator[str]:
    """The department's database with its resident table, filled; yields its URL."""
    engine = sa.create_engine(database_url)
    residents.metadata.create_all(engine)
    with engine.begin() as connection:
        defaults = {"csrq": None, "city": None, "bt": None, "zx": False}
        connection.execute(residents.insert(), [{**defaults, **row} for row in ROWS])
    engine.dispose()
    return database_url


Build = Callable[..., SqlAdapter]


@pytest.fixture
async def build(department_db: str) -> AsyncIterator[Build]:
    """Builds `sql` adapters on the department database; closes them after the test."""
    built: list[SqlAdapter] = []

    def make(
        *, url: str = department_db, retry: RetryPolicy | None = None, **options: Any
    ) -> SqlAdapter:
        options = {"url": url, "mappings": [MAPPING], **options}
        if "query" not in options:
            options.setdefault("table", "hj_resident")
        spec = AdapterSpec(
            adapter_id="psb.population-db",
            kind="sql",
            department="市公安局",
            serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
            options=options,
            timeout=5.0,
            retry=retry or RetryPolicy(attempts=2, base_delay=0.01),
        )
        adapter = build_from_spec(spec)
        assert isinstance(adapter, SqlAdapter)
        built.append(adapter)
        return adapter

    yield make
    for adapter in built:
        await adapter.close()


async def test_fetch_maps_the_subjects_rows(build: Build) -> None:
    adapter = build(changes={"cursor_columns": ["updated_at", "id"]})
    result = await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    assert result.rejected == ()
    [record] = result.records
    assert record.source_record_id == "1"
    assert record.subject == WANG
    assert record.fields == {
        "name": "王伟",
        "birth_date": "1949-12-31",
        "city": None,
        "allowance": 1234.5,
    }
    assert record.updated_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)


async def test_fetch_rejects_malformed_rows_with_reasons(build: Build) -> None:
    result = await build().fetch(ZHANG, [RESIDENT], PURPOSE)
    assert result.records == ()
    [rejection] = result.rejected
    assert rejection.source_record_id == "4"
    assert rejection.reason == "field 'birth_date' (from 'csrq'): '1990-13-45' is not a date"
    assert rejection.raw is not None
    assert rejection.raw["xm"] == "张敏"


async def test_a_query_can_match_keys_stored_unnormalized(build: Build) -> None:
    query = "SELECT * FROM hj_resident WHERE upper(trim(sfzh)) = :key ORDER BY id"
    result = await build(query=query).fetch(WANG, [RESIDENT], PURPOSE)
    assert [r.source_record_id for r in result.records] == ["1", "7"]
    assert {r.subject for r in result.records} == {WANG}


async def test_a_query_answering_another_subject_is_rejected(build: Build) -> None:
    query = "SELECT * FROM hj_resident WHERE :key <> '' AND id IN (1, 4)"
    result = await build(query=query).fetch(WANG, [RESIDENT], PURPOSE)
    assert [r.source_record_id for r in result.records] == ["1"]
    assert [(r.source_record_id, r.reason) for r in result.rejected] == [
        ("4", "field 'birth_date' (from 'csrq'): '1990-13-45' is not a date")
    ]
    query = "SELECT * FROM hj_resident WHERE :key <> '' AND id = 7"
    result = await build(query=query).fetch(ZHANG, [RESIDENT], PURPOSE)
    assert result.rejected == (Rejection("7", "the row's key does not name the requested subject"),)


async def test_unknown_subjects_and_unserved_kinds_answer_nothing(build: Build) -> None:
    adapter = build()
    unknown = parse_key(KeyKind.ID_CARD, "510107199901013337")
    assert (await adapter.fetch(unknown, [RESIDENT], PURPOSE)).records == ()
    uscc = parse_key(KeyKind.USCC, "91320100123456788C")
    assert (await adapter.fetch(uscc, [RESIDENT], PURPOSE)).records == ()


async def test_a_schema_qualified_table_is_read(build: Build, department_db: str) -> None:
    url = sa.make_url(department_db)
    # SQLite's own database is schema "main"; the PostgreSQL test schema is in the URL; a
    # MySQL schema is its database.
    schema = {
        "postgresql": lambda: url.query["options"].split("=")[-1],
        "mysql": lambda: str(url.database),
    }.get(url.get_backend_name(), lambda: "main")()
    result = await build(schema=schema).fetch(WANG, [RESIDENT], PURPOSE)
    assert [r.source_record_id for r in result.records] == ["1"]


async def collect(adapter: SqlAdapter, cursor: str | None, size: int) -> list[ChangeBatch]:
    return [batch async for batch in adapter.changes(cursor, batch_size=size)]


async def test_changes_page_in_cursor_order_and_resume(build: Build) -> None:
    adapter = build(changes={"cursor_columns": ["updated_at", "id"]})
    batches = await collect(adapter, None, 3)
    assert [len(b.changes) for b in batches] == [3, 3, 1]
    assert batches[0].total_estimate == 7
    changes = [c for b in batches for c in b.changes]
    assert [(c.kind, c.source_record_id) for c in changes] == [
        (ChangeKind.UPSERT, "1"),
        (ChangeKind.UPSERT, "2"),
        (ChangeKind.REJECTED, "3"),
        (ChangeKind.REJECTED, "4"),
        (ChangeKind.DELETE, "5"),
        (ChangeKind.REJECTED, "6"),
        (ChangeKind.UPSERT, "7"),
    ]
    # The full-width key with a lower-case check letter arrives normalized.
    full_width = changes[1].record
    assert isinstance(full_width, SourceRecord)
    assert full_width.subject == WANG
    assert changes[2].reason.startswith("key field 'sfzh': ID_CARD: ")
    assert changes[5].reason == "key field 'sfzh' is missing or empty"
    assert changes[5].raw is not None
    assert changes[5].raw["xm"] == "无证件"

    resumed = await collect(adapter, batches[0].cursor, 3)
    assert [c.source_record_id for b in resumed for c in b.changes] == ["4", "5", "6", "7"]
    assert await collect(adapter, batches[-1].cursor, 3) == []


async def test_changes_see_rows_written_after_the_cursor(build: Build, department_db: str) -> None:
    adapter = build(changes={"cursor_columns": ["updated_at", "id"]})
    batches = await collect(adapter, None, 100)
    engine = sa.create_engine(department_db)
    with engine.begin() as connection:
        connection.execute(
            residents.update().where(residents.c.id == 1).values(xm="王伟伟", updated_at=T3)
        )
    engine.dispose()
    later = await collect(adapter, batches[-1].cursor, 100)
    [change] = [c for b in later for c in b.changes]
    assert change.record is not None
    assert change.record.fields["name"] == "王伟伟"


async def test_changes_need_configuration(build: Build) -> None:
    with pytest.raises(AdapterError, match=r"options\.changes is not configured"):
        await collect(build(), None, 10)
    adapter = build(changes={"cursor_columns": ["updated_at", "id"]})
    with pytest.raises(AdapterError, match=r"not a cursor of this sql adapter"):
        await collect(adapter, "file.csv:3", 10)


async def test_the_engine_is_read_only(build: Build, department_db: str) -> None:
    adapter = build()
    await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    with (
        adapter.engine.connect() as connection,
        pytest.raises(sa.exc.DBAPIError, match=r"(?i)read-only|readonly|read only"),
    ):
        connection.execute(residents.delete())
    # Even a query that smuggles a write into a SELECT cannot change anything.
    query = (
        "WITH gone AS (DELETE FROM hj_resident RETURNING *) SELECT * FROM gone WHERE sfzh = :key"
    )
    with pytest.raises(AdapterError) as caught:
        await build(query=query).fetch(WANG, [RESIDENT], PURPOSE)
    assert not caught.value.retryable
    engine = sa.create_engine(department_db)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(residents)).scalar() == 7
    engine.dispose()


async def test_sql_errors_are_not_retryable_and_name_the_error(build: Build) -> None:
    with pytest.raises(AdapterError) as missing_table:
        await build(table="no_such_table").fetch(WANG, [RESIDENT], PURPOSE)
    assert "no table" in missing_table.value.message
    assert not missing_table.value.retryable

    missing_column = {**MAPPING, "id_field": "record_no"}
    with pytest.raises(AdapterError, match=r"has no column 'record_no'") as caught:
        await build(mappings=[missing_column]).fetch(WANG, [RESIDENT], PURPOSE)
    assert "options.mappings[0].id_field" in caught.value.message

    query = "SELECT nope FROM hj_resident WHERE sfzh = :key"
    with pytest.raises(AdapterError) as bad_query:
        await build(query=query).fetch(WANG, [RESIDENT], PURPOSE)
    assert not bad_query.value.retryable
    # The driver's error class and first line, never a raw SQLAlchemy exception.
    assert bad_query.value.message.split(": ")[1] in {"OperationalError", "UndefinedColumn"}
    assert isinstance(bad_query.value.__cause__, sa.exc.SQLAlchemyError)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/test",
        "mysql+pymysql://root@127.0.0.1:1/test",
        "sqlite:///{tmp}/missing/dept.db",
    ],
    ids=["postgresql-refused", "mysql-refused", "sqlite-missing-file"],
)
async def test_connection_failures_are_retryable(build: Build, url: str, tmp_path: Any) -> None:
    adapter = build(url=url.format(tmp=tmp_path), retry=RetryPolicy(attempts=2, base_delay=0.01))
    with pytest.raises(AdapterError) as caught:
        await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    assert caught.value.retryable
    assert "cannot connect" in caught.value.message
