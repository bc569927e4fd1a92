"""Several threads (and engines) writing at once must queue, not fail.

On SQLite this exercises WAL, the busy timeout and ``BEGIN IMMEDIATE``; on PostgreSQL
the row locks taken by concurrent upserts of overlapping records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from certstore import migrate
from certstore.database import Database
from certstore.models import RecordRow, SyncCursorRow
from certstore.records import RecordRepository
from domain.records import SourceRecord
from domain.subjects import KeyKind, SubjectKey

THREADS = 8
ROUNDS = 15
T0 = datetime(2026, 3, 1, tzinfo=UTC)
COMPANY = SubjectKey(KeyKind.USCC, "91320100MA1FL8XQ1A")


def run_in_threads(work: Callable[[int], None], threads: int = THREADS) -> None:
    start = threading.Barrier(threads)

    def started(worker: int) -> None:
        start.wait()
        work(worker)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(started, worker) for worker in range(threads)]:
            future.result()


def licence(source_record_id: str, worker: int, round_: int) -> SourceRecord:
    return SourceRecord(
        "business_licence", source_record_id, COMPANY, {"worker": worker, "round": round_}
    )


def test_concurrent_upserts_of_overlapping_records(database: Database) -> None:
    repository = RecordRepository(database)

    def work(worker: int) -> None:
        for round_ in range(ROUNDS):
            # Half the records are shared by every worker, half are the worker's own.
            records = [licence(f"shared-{n}", worker, round_) for n in range(10)]
            records += [licence(f"w{worker}-{n}", worker, round_) for n in range(10)]
            if worker % 2:
                records.reverse()
            repository.upsert_records(
                "src", "dept", records, T0 + timedelta(seconds=round_, microseconds=worker)
            )

    run_in_threads(work)

    assert len(repository.find(COMPANY)) == 10 + 10 * THREADS
    with database.transaction(readonly=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RecordRow)) == 90


def test_read_then_write_transactions_from_several_engines(database_url: str) -> None:
    # Separate engines stand for separate hub processes on one database file.
    migrate.upgrade(database_url)
    databases = [Database.from_url(database_url) for _ in range(THREADS)]
    try:

        def work(worker: int) -> None:
            database = databases[worker]
            for round_ in range(ROUNDS):
                with database.transaction() as session:
                    seen = session.scalar(sa.select(sa.func.count()).select_from(SyncCursorRow))
                    session.add(
                        SyncCursorRow(
                            adapter_id=f"a{worker}-{round_}", cursor=str(seen), updated_at=T0
                        )
                    )

        run_in_threads(work)

        with databases[0].transaction(readonly=True) as session:
            cursors = session.scalars(sa.select(SyncCursorRow.cursor)).all()
        assert len(cursors) == THREADS * ROUNDS
        if databases[0].dialect_name == "sqlite":
            # BEGIN IMMEDIATE serializes writers: each saw every earlier one.
            assert sorted(int(c) for c in cursors) == list(range(THREADS * ROUNDS))
    finally:
        for database in databases:
            database.dispose()


def test_readers_are_not_blocked_by_an_open_write(database: Database) -> None:
    repository = RecordRepository(database)
    repository.upsert_records("src", "dept", [licence("A", 0, 0)], T0)
    writing = threading.Event()
    release = threading.Event()

    def hold_a_write() -> None:
        with database.transaction() as session:
            session.execute(sa.update(RecordRow).values(department="changing"))
            writing.set()
            release.wait(timeout=30)

    with ThreadPoolExecutor(max_workers=1) as pool:
        writer = pool.submit(hold_a_write)
        assert writing.wait(timeout=30)
        try:
            assert [r.department for r in repository.find(COMPANY)] == ["dept"]
            assert database.ping() is True
        finally:
            release.set()
        writer.result()

    assert [r.department for r in repository.find(COMPANY)] == ["changing"]
