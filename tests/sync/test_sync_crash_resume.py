"""Kill `tongban sync run` with SIGKILL at random points, several times, then let it
finish: the store ends up exactly as after an uninterrupted run, nothing duplicated,
every change counted once, and the cursor where an uninterrupted run leaves it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync_testkit import (
    FILE_ADAPTER,
    Row,
    adapter_cursor,
    file_adapter,
    key_count,
    remove_exports,
    rows,
    run_job,
    store_content,
    write_config,
    write_export,
)

from certstore import migrate
from certstore.database import Database
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import JobState, SyncJob, SyncMode

pytestmark = pytest.mark.slow

TONGBAN = str(Path(sys.executable).parent / "tongban")
SOURCE_ROWS = 20_000
KILLS = 3


def snapshots() -> tuple[list[Row], list[Row]]:
    """The department's snapshot before, and after 1% changed, 0.5% gone, 1% new."""
    v1 = rows(SOURCE_ROWS)
    gone = {row.index for row in v1[50::200]}
    v2 = [
        row.changed() if row.index % 100 == 0 else row for row in v1 if row.index not in gone
    ] + rows(SOURCE_ROWS // 100, start=SOURCE_ROWS)
    return v1, v2


def running_job(database: Database) -> SyncJob | None:
    return SyncJobRepository(database).running_job(FILE_ADAPTER)


def kill_mid_run(config: Path, database: Database, floor: int, log: Path) -> int:
    """Start a FULL run, SIGKILL it after it committed past `floor`; its records seen."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [TONGBAN, "sync", "run", FILE_ADAPTER, "--full", "--config", str(config)],
            stdout=output,
            stderr=output,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = running_job(database)
            if job is not None and job.progress.records_seen > floor:
                break
            if process.poll() is not None:
                raise AssertionError(f"the run ended by itself: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        # Somewhere in the next batches: reading, mapping, or inside the transaction.
        time.sleep(random.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    job = running_job(database)
    assert job is not None, "killed before the end"
    return job.progress.records_seen


def test_a_killed_sync_resumes_to_the_same_store_as_an_uninterrupted_one(
    database_url: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    v1, v2 = snapshots()
    write_export(exports / "enrolment-0001.csv", v1)
    migrate.upgrade(database_url)
    database = Database.from_url(database_url)
    reference = Database.from_url(f"sqlite:///{tmp_path / 'reference.db'}")
    migrate.upgrade(f"sqlite:///{tmp_path / 'reference.db'}")
    asyncio.run(run_job(database, file_adapter(exports), SyncMode.FULL))
    asyncio.run(run_job(reference, file_adapter(exports), SyncMode.FULL))
    remove_exports(exports)
    write_export(exports / "enrolment-0002.csv", v2)
    asyncio.run(run_job(reference, file_adapter(exports), SyncMode.FULL))
    config = write_config(
        tmp_path / "tongban.toml",
        database_url=database_url,
        data_dir=tmp_path / "data",
        exports=exports,
        sync={"batch_size": 500},
    )
    log = tmp_path / "runs.log"

    seen = 0
    for _ in range(KILLS):
        seen = kill_mid_run(config, database, seen, log)
    finished = subprocess.run(
        [TONGBAN, "sync", "run", FILE_ADAPTER, "--full", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming FULL job" in finished.stderr
    jobs = SyncJobRepository(database).list_jobs(adapter_id=FILE_ADAPTER)
    # One job for the second snapshot, resumed by each run, counted exactly once.
    assert [job.state for job in jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    resumed = jobs[0]
    assert resumed.progress.records_seen == len(v2)
    assert resumed.progress.applied + resumed.progress.unchanged == len(v2)
    assert resumed.progress.withdrawn == SOURCE_ROWS // 200
    expected = store_content(reference, FILE_ADAPTER)
    assert store_content(database, FILE_ADAPTER) == expected
    assert key_count(database, FILE_ADAPTER) == len(expected)
    assert adapter_cursor(database, FILE_ADAPTER) == adapter_cursor(reference, FILE_ADAPTER)
    assert adapter_cursor(database, FILE_ADAPTER) == f"enrolment-0002.csv:{len(v2)}"
    database.dispose()
    reference.dispose()
    assert os.path.getsize(log) > 0
