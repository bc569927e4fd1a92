"""Builders for the sync tests: department sources (CSV exports, a SQL table) with
rows of valid ID-card holders, adapters on them, and a reader of the store's content.

Every source row has a known record, so a test can compute what the store must hold
after any sequence of syncs and compare it whole.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from adapters.base import Adapter, AdapterSpec, Change, ChangeBatch, ChangeKind
from adapters.factory import build_from_spec
from certstore.database import Database
from certstore.models import RecordRow
from certstore.sync_jobs import SyncJobRepository
from domain.records import SourceRecord
from domain.subjects import KeyKind, id_card_check_char, parse_key
from domain.sync_jobs import SyncJob, SyncMode
from exchange.record_types import RecordTypes
from exchange.settings import RecordTypeSettings, SyncSettings
from exchange.sync.runner import SyncRunner

FILE_ADAPTER = "hrss.enrolment"
SQL_ADAPTER = "hrss.enrolment-db"
RECORD_TYPE = "social_security.enrolment"
DEPARTMENT = "人力资源和社会保障局"
FIELDS = {"insurance": "string", "status": "string", "since": "date", "employer": "string"}
HEADER = ["参保编号", "证件号码", "险种", "参保状态", "参保日期", "单位名称", "注销"]
FILE_MAPPING: dict[str, Any] = {
    "record_type": RECORD_TYPE,
    "key_kind": "ID_CARD",
    "key_field": "证件号码",
    "id_field": "参保编号",
    "field_map": {
        "insurance": "险种",
        "status": "参保状态",
        "since": "参保日期",
        "employer": "单位名称",
    },
    "field_types": {"since": "date"},
    "deleted_field": "注销",
}
SQL_MAPPING: dict[str, Any] = {
    "record_type": RECORD_TYPE,
    "key_kind": "ID_CARD",
    "key_field": "sfzh",
    "id_field": "cbbh",
    "field_map": {"insurance": "xz", "status": "zt", "since": "cbrq", "employer": "dwmc"},
    "field_types": {"since": "date"},
    "deleted_field": "zx",
    "updated_at_field": "updated_at",
}
INSURANCES = ("养老保险", "医疗保险", "失业保险", "工伤保险")
T0 = datetime(2024, 5, 1, 8, 0)


def id_card(index: int) -> str:
    """A valid, unique resident ID number per index (GB 11643-1999 check character)."""
    born = date(1950, 1, 1) + timedelta(days=index // 1000)
    body = f"110105{born:%Y%m%d}{index % 1000:03d}"
    return body + id_card_check_char(body)


@dataclass(frozen=True)
class Row:
    """One enrolment as a department holds it."""

    index: int
    status: str = "正常参保"
    employer: str = ""

    @cached_property
    def record_id(self) -> str:
        return f"S{self.index:08d}"

    @cached_property
    def key(self) -> str:
        return id_card(self.index)

    @property
    def insurance(self) -> str:
        return INSURANCES[self.index % len(INSURANCES)]

    @property
    def since(self) -> str:
        return f"{2000 + self.index % 20}-{1 + self.index % 12:02d}-{1 + self.index % 28:02d}"

    @cached_property
    def fields(self) -> dict[str, Any]:
        return {
            "insurance": self.insurance,
            "status": self.status,
            "since": self.since,
            "employer": self.employer or f"单位{self.index % 500:03d}",
        }

    def stored(self, withdrawn: bool) -> Stored:
        """The record the store must hold for this row."""
        return Stored(self.key, self.fields, withdrawn)

    def changed(self) -> Row:
        return replace(self, status="暂停参保", employer=f"新单位{self.index % 7}")

    def csv_cells(self, deleted: bool = False) -> list[str]:
        fields = self.fields
        return [
            self.record_id,
            self.key,
            fields["insurance"],
            fields["status"],
            fields["since"],
            fields["employer"],
            "是" if deleted else "",
        ]


def rows(count: int, start: int = 0) -> list[Row]:
    return [Row(index) for index in range(start, start + count)]


# --- CSV exports ------------------------------------------------------------------------------


def write_export(
    path: Path,
    upserts: Iterable[Row],
    deleted: Iterable[Row] = (),
    raw_lines: Sequence[str] = (),
) -> Path:
    """A CSV export: upserted rows, rows marked deleted, then literal `raw_lines`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(row.csv_cells() for row in upserts)
        writer.writerows(row.csv_cells(deleted=True) for row in deleted)
        for line in raw_lines:
            handle.write(line + "\r\n")
    return path


def remove_exports(folder: Path) -> None:
    for old in folder.iterdir():
        old.unlink()


def file_adapter(folder: Path, adapter_id: str = FILE_ADAPTER, **mapping: Any) -> Adapter:
    return build_from_spec(
        AdapterSpec(
            adapter_id=adapter_id,
            kind="file",
            department=DEPARTMENT,
            serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
            options={"folder": str(folder), "mappings": [{**FILE_MAPPING, **mapping}]},
        )
    )


# --- a department database --------------------------------------------------------------------

SOURCE_TABLE = "t_enrolment"
source_metadata = sa.MetaData()
source_table = sa.Table(
    SOURCE_TABLE,
    source_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("cbbh", sa.String(20), nullable=False),
    sa.Column("sfzh", sa.String(20), nullable=False),
    sa.Column("xz", sa.String(20), nullable=False),
    sa.Column("zt", sa.String(20), nullable=False),
    sa.Column("cbrq", sa.String(20), nullable=False),
    sa.Column("dwmc", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("zx", sa.Boolean, nullable=False),
    # A department that publishes changes indexes the columns it pages them by.
    sa.Index("ix_t_enrolment_changes", "updated_at", "id"),
)


def _source_values(row: Row, updated_at: datetime, deleted: bool = False) -> dict[str, Any]:
    fields = row.fields
    return {
        "id": row.index,
        "cbbh": row.record_id,
        "sfzh": row.key,
        "xz": fields["insurance"],
        "zt": fields["status"],
        "cbrq": fields["since"],
        "dwmc": fields["employer"],
        "updated_at": updated_at,
        "zx": deleted,
    }


class SqlSource:
    """The department's enrolment table, in a SQLite file or a PostgreSQL schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        source_metadata.create_all(self.engine)

    def insert(self, new: Iterable[Row], at: datetime = T0) -> None:
        values = [_source_values(row, at) for row in new]
        with self.engine.begin() as connection:
            for start in range(0, len(values), 5000):
                connection.execute(sa.insert(source_table), values[start : start + 5000])

    def update(self, changed: Iterable[Row], at: datetime) -> None:
        statement = (
            sa.update(source_table)
            .where(source_table.c.id == sa.bindparam("row_id"))
            .values(
                zt=sa.bindparam("new_zt"),
                dwmc=sa.bindparam("new_dwmc"),
                updated_at=sa.bindparam("new_at"),
            )
        )
        with self.engine.begin() as connection:
            connection.execute(
                statement,
                [
                    {
                        "row_id": row.index,
                        "new_zt": row.fields["status"],
                        "new_dwmc": row.fields["employer"],
                        "new_at": at,
                    }
                    for row in changed
                ],
            )

    def soft_delete(self, gone: Iterable[Row], at: datetime) -> None:
        ids = [row.index for row in gone]
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(source_table)
                .where(source_table.c.id.in_(ids))
                .values(zx=True, updated_at=at)
            )

    def hard_delete(self, gone: Iterable[Row]) -> None:
        ids = [row.index for row in gone]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(source_table).where(source_table.c.id.in_(ids)))

    def dispose(self) -> None:
        self.engine.dispose()


def sql_adapter(url: str, adapter_id: str = SQL_ADAPTER) -> Adapter:
    return build_from_spec(
        AdapterSpec(
            adapter_id=adapter_id,
            kind="sql",
            department=DEPARTMENT,
            serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
            options={
                "url": url,
                "table": SOURCE_TABLE,
                "mappings": [SQL_MAPPING],
                "changes": {"cursor_columns": ["updated_at", "id"]},
            },
        )
    )


# --- running jobs and reading the store -------------------------------------------------------


def record_types() -> RecordTypes:
    return RecordTypes({RECORD_TYPE: RecordTypeSettings(fields=dict(FIELDS))})


def sync_settings(**overrides: Any) -> SyncSettings:
    values: dict[str, Any] = {
        "batch_size": 1000,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
    }
    values.update(overrides)
    return SyncSettings(**values)


async def run_job(
    database: Database,
    adapter: Adapter,
    mode: SyncMode,
    *,
    settings: SyncSettings | None = None,
    on_progress: Callable[[SyncJob], None] | None = None,
) -> SyncJob:
    """Create and run one job in the foreground, as `tongban sync run` does."""
    repository = SyncJobRepository(database)
    lease = await asyncio.to_thread(
        repository.create_running,
        adapter.adapter_id,
        mode,
        "manual",
        "test:1",
        30,
        datetime.now(UTC),
    )
    runner = SyncRunner(
        repository,
        adapter,
        record_types(),
        settings or sync_settings(),
        on_progress=on_progress,
    )
    return await runner.run(lease)


@dataclass(frozen=True)
class Stored:
    """A record as the store holds it, without the parts that depend on timing."""

    subject_value: str
    fields: dict[str, Any]
    withdrawn: bool


def store_content(database: Database, adapter_id: str) -> dict[str, Stored]:
    """The adapter's records by source record id (withdrawn ones flagged)."""
    records = sa.table(
        "records",
        sa.column("adapter_id"),
        sa.column("source_record_id"),
        sa.column("subject_value"),
        sa.column("fields", sa.JSON),
        sa.column("withdrawn_at"),
    )
    with database.engine.connect() as connection:
        found = connection.execute(
            sa.select(
                records.c.source_record_id,
                records.c.subject_value,
                records.c.fields,
                records.c.withdrawn_at,
            ).where(records.c.adapter_id == adapter_id)
        )
        content: dict[str, Stored] = {}
        for source_record_id, subject_value, fields, withdrawn_at in found:
            if isinstance(fields, str):
                fields = json.loads(fields)
            assert source_record_id not in content, f"duplicate record {source_record_id}"
            content[source_record_id] = Stored(subject_value, fields, withdrawn_at is not None)
    return content


def expected_content(live: Iterable[Row], withdrawn: Iterable[Row] = ()) -> dict[str, Stored]:
    content = {row.record_id: row.stored(False) for row in live}
    for row in withdrawn:
        content[row.record_id] = row.stored(True)
    return content


def key_count(database: Database, adapter_id: str) -> int:
    with database.engine.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM record_keys k JOIN records r ON r.id = k.record_id "
                    "WHERE r.adapter_id = :adapter"
                ),
                {"adapter": adapter_id},
            ).scalar_one()
        )


def withdrawal_times(database: Database, adapter_id: str) -> set[datetime]:
    """The distinct times the adapter's records were withdrawn at."""
    with database.transaction(readonly=True) as session:
        return set(
            session.scalars(
                sa.select(RecordRow.withdrawn_at)
                .where(RecordRow.adapter_id == adapter_id, RecordRow.withdrawn_at.is_not(None))
                .distinct()
            )
        )


def adapter_cursor(database: Database, adapter_id: str) -> str | None:
    return SyncJobRepository(database).adapter_cursor(adapter_id)


# --- a scripted source --------------------------------------------------------------------------


class ScriptedAdapter(Adapter):
    """A source whose change stream is `batches`; cursor ``"<n>"`` resumes after batch n.

    `failures` maps a batch number to the errors raised (once each, in order) when the
    stream reaches it; `pause` waits that long before each batch.
    """

    def __init__(
        self,
        batches: Sequence[Sequence[Change]],
        *,
        adapter_id: str = "scripted",
        failures: dict[int, list[Exception]] | None = None,
        pause: float = 0.0,
        total: int | None = None,
    ) -> None:
        super().__init__(
            AdapterSpec(
                adapter_id=adapter_id,
                kind="python",
                department=DEPARTMENT,
                serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
            )
        )
        self.batches = [tuple(batch) for batch in batches]
        self.failures = {number: list(errors) for number, errors in (failures or {}).items()}
        self.pause = pause
        self.total = total
        self.streams_started: list[str | None] = []

    async def _fetch(self, subject: Any, record_types: Any, purpose: Any) -> list[Any]:
        return []

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        self.streams_started.append(cursor)
        start = 0 if cursor is None else int(cursor)
        for number in range(start, len(self.batches)):
            if self.pause:
                await asyncio.sleep(self.pause)
            errors = self.failures.get(number)
            if errors:
                raise errors.pop(0)
            remaining = None
            if self.total is not None and number == start:
                remaining = sum(len(batch) for batch in self.batches[start:])
            yield ChangeBatch(self.batches[number], str(number + 1), remaining)


def upsert(row: Row) -> Change:
    record = SourceRecord(
        RECORD_TYPE,
        row.record_id,
        parse_key(KeyKind.ID_CARD, row.key),
        row.fields,
    )
    return Change(ChangeKind.UPSERT, RECORD_TYPE, row.record_id, record)


def delete(row: Row) -> Change:
    return Change(ChangeKind.DELETE, RECORD_TYPE, row.record_id)


def rejected(where: str, reason: str, raw: dict[str, Any] | None = None) -> Change:
    return Change(ChangeKind.REJECTED, RECORD_TYPE, where, reason=reason, raw=raw)


def batches_of(changes: Sequence[Change], size: int) -> list[list[Change]]:
    return [list(changes[start : start + size]) for start in range(0, len(changes), size)]


# --- a configuration file, for processes ----------------------------------------------------


def write_config(
    path: Path,
    *,
    database_url: str,
    data_dir: Path,
    exports: Path,
    sync: dict[str, Any] | None = None,
    schedules: Sequence[dict[str, Any]] = (),
) -> Path:
    """A hub configuration with the `file` adapter on `exports`, as an operator writes it."""

    def value(item: Any) -> str:
        return json.dumps(item, ensure_ascii=False)

    mapping = FILE_MAPPING
    lines = [
        f"data_dir = {value(str(data_dir))}",
        "[database]",
        f"url = {value(database_url)}",
        "[http]",
        'listen = ""',
        "[logging]",
        'level = "INFO"',
        'format = "json"',
        f'[record_types."{RECORD_TYPE}"]',
        "fields = { "
        + ", ".join(f"{name} = {value(kind)}" for name, kind in FIELDS.items())
        + " }",
        "[sync]",
        *(f"{name} = {value(setting)}" for name, setting in (sync or {}).items()),
        *(
            "[[sync.schedules]]\n"
            + "\n".join(f"{name} = {value(setting)}" for name, setting in schedule.items())
            for schedule in schedules
        ),
        "[[adapters]]",
        f"id = {value(FILE_ADAPTER)}",
        'kind = "file"',
        f"department = {value(DEPARTMENT)}",
        f'serves = [{{ record_type = "{RECORD_TYPE}", key_kinds = ["ID_CARD"] }}]',
        "[adapters.options]",
        f"folder = {value(str(exports))}",
        "[[adapters.options.mappings]]",
        *(
            f"{name} = {value(setting)}"
            for name, setting in mapping.items()
            if not isinstance(setting, dict)
        ),
        *(
            f"{name} = {{ "
            + ", ".join(f"{value(key)} = {value(item)}" for key, item in setting.items())
            + " }"
            for name, setting in mapping.items()
            if isinstance(setting, dict)
        ),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
