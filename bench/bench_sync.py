"""Sync benchmarks: ingest rate of a job against a raw bulk load, and peak memory.

A `file` adapter reads one CSV export (ID-card keyed enrolments); the job runs through
the real `SyncRunner` (mapping, validation, hashing, dedup lookup, upsert, keys,
dead-letter and cursor bookkeeping, one transaction per batch) into a freshly migrated
store. The baseline, in the same run and on the same schema, is a hand-written loader
of the same file: `csv` reads it, each row becomes the same `records` and
`record_keys` rows (same JSON, same content hash), and the driver inserts them with
`executemany` (SQLite) or `executemany` and COPY (PostgreSQL), one transaction per
1,000 rows. The insert-only part of the baseline and the adapter's own read rate are
printed as well, to show where the time goes.

Peak memory is measured in a child process that syncs a 1,000,000-row export (its
own high-water RSS, `VmHWM`: Linux's `ru_maxrss` would carry over the parent's peak),
so nothing of the parent's counts.

PostgreSQL runs when ``TONGBAN_TEST_DATABASE_URL`` or ``--pg URL`` names a server;
otherwise it prints a skip line.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from adapters.base import Adapter, AdapterSpec
from adapters.factory import build_from_spec
from bench.harness import Ratio, status_kib
from certstore import migrate
from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from domain.subjects import KeyKind, id_card_check_char
from domain.sync_jobs import SyncMode
from exchange.logs import configure_logging
from exchange.record_types import RecordTypes
from exchange.settings import RecordTypeSettings, SyncSettings
from exchange.sync.runner import SyncRunner

RATE_ROWS = 100_000
RSS_ROWS = 1_000_000
RSS_CEILING_MB = 150.0  # issue 15: a 1,000,000-row sync stays under 150 MB
RAW_BATCH = 1_000
ADAPTER_ID = "hrss.enrolment"
RECORD_TYPE = "social_security.enrolment"
HEADER = ["参保编号", "证件号码", "险种", "参保状态", "参保日期", "单位名称", "注销"]
FIELDS = {"insurance": "string", "status": "string", "since": "date", "employer": "string"}
MAPPING = {
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
INSURANCES = ("养老保险", "医疗保险", "失业保险", "工伤保险")


def id_card(index: int) -> str:
    """A valid, unique ID-card number for each index (GB 11643-1999 check character)."""
    born = date(1950, 1, 1) + timedelta(days=index // 1000)
    body = f"110105{born:%Y%m%d}{index % 1000:03d}"
    return body + id_card_check_char(body)


def export_rows(count: int) -> Iterator[list[str]]:
    for index in range(count):
        yield [
            f"S{index:08d}",
            id_card(index),
            INSURANCES[index % len(INSURANCES)],
            "正常参保",
            f"{2000 + index % 20}-{1 + index % 12:02d}-{1 + index % 28:02d}",
            f"单位{index % 500:03d}",
            "",
        ]


def write_export(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "enrolment-0001.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(export_rows(count))
    return path


def file_adapter(folder: Path) -> Adapter:
    return build_from_spec(
        AdapterSpec(
            adapter_id=ADAPTER_ID,
            kind="file",
            department="人力资源和社会保障局",
            serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
            options={"folder": str(folder), "mappings": [MAPPING]},
        )
    )


def record_types() -> RecordTypes:
    return RecordTypes({RECORD_TYPE: RecordTypeSettings(fields=dict(FIELDS))})


async def run_sync(url: str, folder: Path) -> tuple[int, float]:
    """Sync the export in `folder` into the store at `url`; (records seen, seconds)."""
    database = Database.from_url(url)
    repository = SyncJobRepository(database)
    adapter = file_adapter(folder)
    lease = repository.create_running(
        ADAPTER_ID, SyncMode.FULL, "manual", f"bench:{os.getpid()}", 60, datetime.now(UTC)
    )
    started = time.perf_counter()
    job = await SyncRunner(repository, adapter, record_types(), SyncSettings()).run(lease)
    elapsed = time.perf_counter() - started
    await adapter.close()
    database.dispose()
    if job.error:
        raise RuntimeError(job.error)
    return job.progress.records_seen, elapsed


async def adapter_read_rate(folder: Path) -> float:
    adapter = file_adapter(folder)
    count = 0
    started = time.perf_counter()
    async for batch in adapter.changes(None, batch_size=1000):
        count += len(batch.changes)
    elapsed = time.perf_counter() - started
    await adapter.close()
    return count / elapsed


# --- the raw loader ---------------------------------------------------------------------------


def raw_rows(path: Path, fetched_at: str) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(records row, record_keys row) per CSV row, as the job stores them."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for number, row in enumerate(reader, start=1):
            fields = {"insurance": row[2], "status": row[3], "since": row[4], "employer": row[5]}
            canonical = json.dumps(
                fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            )
            digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
            record = (number, ADAPTER_ID, "人力资源和社会保障局", RECORD_TYPE, row[0], "ID_CARD")
            yield (
                (*record, row[1], "[]", canonical, digest, fetched_at, None, None),
                (number, "ID_CARD", row[1]),
            )


RECORD_COLUMNS = (
    "id, adapter_id, department, record_type, source_record_id, subject_kind, subject_value, "
    "related_subjects, fields, content_hash, fetched_at, source_updated_at, withdrawn_at"
)


def raw_sqlite(path: Path, url: str) -> tuple[float, float]:
    """(rows/s of the whole raw load, rows/s of its inserts alone) into SQLite."""
    import sqlite3

    database_path = sa.make_url(url).database
    assert database_path is not None
    connection = sqlite3.connect(database_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    records_sql = f"INSERT INTO records ({RECORD_COLUMNS}) VALUES ({', '.join('?' * 13)})"
    keys_sql = "INSERT INTO record_keys (record_id, kind, value) VALUES (?, ?, ?)"
    fetched_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    inserting = 0.0
    count = 0
    started = time.perf_counter()
    for chunk in _chunks(raw_rows(path, fetched_at), RAW_BATCH):
        begin = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(records_sql, [record for record, _ in chunk])
        connection.executemany(keys_sql, [key for _, key in chunk])
        connection.execute("COMMIT")
        inserting += time.perf_counter() - begin
        count += len(chunk)
    total = time.perf_counter() - started
    connection.close()
    return count / total, count / inserting


def raw_postgres(path: Path, url: str, *, copy: bool) -> tuple[float, float]:
    """(rows/s of the whole raw load, rows/s of its inserts alone) into PostgreSQL."""
    import psycopg

    parsed = sa.make_url(url).set(drivername="postgresql")
    connection = psycopg.connect(parsed.render_as_string(hide_password=False))
    fetched_at = datetime.now(UTC)
    inserting = 0.0
    count = 0
    records_sql = f"INSERT INTO records ({RECORD_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})"
    keys_sql = "INSERT INTO record_keys (record_id, kind, value) VALUES (%s, %s, %s)"
    started = time.perf_counter()
    with connection:
        for chunk in _chunks(raw_rows(path, fetched_at.isoformat()), RAW_BATCH):
            begin = time.perf_counter()
            with connection.transaction(), connection.cursor() as cursor:
                if copy:
                    with cursor.copy(f"COPY records ({RECORD_COLUMNS}) FROM STDIN") as stream:
                        for record, _ in chunk:
                            stream.write_row(record)
                    with cursor.copy(
                        "COPY record_keys (record_id, kind, value) FROM STDIN"
                    ) as keys:
                        for _, key in chunk:
                            keys.write_row(key)
                else:
                    cursor.executemany(records_sql, [record for record, _ in chunk])
                    cursor.executemany(keys_sql, [key for _, key in chunk])
            inserting += time.perf_counter() - begin
            count += len(chunk)
    total = time.perf_counter() - started
    return count / total, count / inserting


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- stores -----------------------------------------------------------------------------------


def fresh_sqlite(folder: Path, name: str) -> str:
    url = f"sqlite:///{folder / name}"
    migrate.upgrade(url)
    return url


class PostgresSchemas:
    """Fresh schemas on a PostgreSQL server, dropped at the end."""

    def __init__(self, base_url: str) -> None:
        self.admin = sa.create_engine(base_url.replace("postgresql://", "postgresql+psycopg://"))
        self.created: list[str] = []

    def fresh(self) -> str:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        self.created.append(schema)
        url = self.admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        text = url.render_as_string(hide_password=False)
        migrate.upgrade(text)
        return text

    def drop(self) -> None:
        with self.admin.begin() as connection:
            for schema in self.created:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        self.admin.dispose()


# --- peak memory ------------------------------------------------------------------------------


def rss_child(url: str, folder: str) -> None:
    """Entry of the child process: sync `folder` into `url`, print peak RSS in MB."""
    configure_logging("ERROR")
    migrate.upgrade(url)
    seen, elapsed = asyncio.run(run_sync(url, Path(folder)))
    print(json.dumps({"records": seen, "seconds": elapsed, "peak_rss_mb": _own_peak_kb() / 1024}))


def _own_peak_kb() -> int:
    """This process's peak RSS in KiB, its own memory only.

    Linux carries `ru_maxrss` over an exec from the process that forked: a child
    started by a large parent (a whole `make bench` run) would report the parent's
    peak. The high-water mark of the current address space (`VmHWM`) is the child's.
    """
    own = status_kib("VmHWM")
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(folder: Path) -> tuple[float, int, float]:
    export = folder / "rss-export"
    write_export(export, RSS_ROWS)
    url = f"sqlite:///{folder / 'rss.db'}"
    answer = subprocess.run(
        [sys.executable, "-m", "bench.bench_sync", "--rss-child", url, str(export)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    figures = json.loads(answer.stdout.strip().splitlines()[-1])
    return float(figures["peak_rss_mb"]), int(figures["records"]), float(figures["seconds"])


# --- the benchmark ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Ratio]:
    args = list(sys.argv[1:] if argv is None else argv)
    pg_url = os.environ.get("TONGBAN_TEST_DATABASE_URL")
    if "--pg" in args:
        pg_url = args[args.index("--pg") + 1]
    configure_logging("ERROR")
    ratios: list[Ratio] = []
    with tempfile.TemporaryDirectory(prefix="tongban-bench-sync-") as temporary:
        folder = Path(temporary)
        export = folder / "export"
        path = write_export(export, RATE_ROWS)
        read_rate = asyncio.run(adapter_read_rate(export))
        print(f"file adapter alone: reads and maps {read_rate:,.0f} rows/s ({RATE_ROWS:,} rows)")

        seen, elapsed = asyncio.run(run_sync(fresh_sqlite(folder, "job.db"), export))
        job_rate = seen / elapsed
        load_rate, insert_rate = raw_sqlite(path, fresh_sqlite(folder, "raw.db"))
        print(
            f"SQLite: sync job {job_rate:,.0f} records/s; raw loader {load_rate:,.0f} rows/s "
            f"(its executemany alone {insert_rate:,.0f} rows/s)"
        )
        ratios.append(
            Ratio(
                "sync: SQLite job ingest vs raw sqlite3 executemany loader",
                job_rate,
                load_rate,
                0.40,
                "records/s",
            )
        )
        if pg_url:
            schemas = PostgresSchemas(pg_url)
            try:
                seen, elapsed = asyncio.run(run_sync(schemas.fresh(), export))
                job_rate = seen / elapsed
                many_rate, many_insert = raw_postgres(path, schemas.fresh(), copy=False)
                copy_rate, copy_insert = raw_postgres(path, schemas.fresh(), copy=True)
            finally:
                schemas.drop()
            print(
                f"PostgreSQL: sync job {job_rate:,.0f} records/s; raw loader with executemany "
                f"{many_rate:,.0f} rows/s (inserts alone {many_insert:,.0f}), with COPY "
                f"{copy_rate:,.0f} rows/s (inserts alone {copy_insert:,.0f})"
            )
            ratios.append(
                Ratio(
                    "sync: PostgreSQL job ingest vs raw psycopg executemany loader",
                    job_rate,
                    many_rate,
                    0.40,
                    "records/s",
                )
            )
            ratios.append(
                Ratio(
                    "sync: PostgreSQL job ingest vs raw psycopg COPY loader",
                    job_rate,
                    copy_rate,
                    0.40,
                    "records/s",
                )
            )
        else:
            print("PostgreSQL: skipped (set TONGBAN_TEST_DATABASE_URL or pass --pg URL)")

        peak_mb, records, seconds = peak_rss(folder)
        print(
            f"peak RSS of a {records:,}-record sync into SQLite: {peak_mb:,.0f} MB "
            f"({records / seconds:,.0f} records/s)"
        )
        ratios.append(
            Ratio(
                f"sync: peak RSS of a {RSS_ROWS:,}-row sync vs {RSS_CEILING_MB:.0f} MB ceiling",
                peak_mb,
                RSS_CEILING_MB,
                1.0,
                "MB",
                higher_is_better=False,
            )
        )
    return ratios


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3])
    else:
        from bench.harness import report

        sys.exit(report(main()))
