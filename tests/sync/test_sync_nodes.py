"""Two hub processes on one PostgreSQL with the same schedule: each tick's job runs
once, on one node; kill the node running a job and the other takes it over once the
lease has expired, and finishes it without losing or repeating a record."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sync_testkit import (
    FILE_ADAPTER,
    expected_content,
    rows,
    store_content,
    write_config,
    write_export,
)

from certstore import migrate
from certstore.database import Database, create_engine_for
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import JobState, SyncJob

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POSTGRES_URL_ENV = "TONGBAN_TEST_DATABASE_URL"
TONGBAN = str(Path(sys.executable).parent / "tongban")
SOURCE_ROWS = 6000
LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.4


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_URL_ENV}")
    admin = create_engine_for(base)
    schema = f"t_{uuid.uuid4().hex}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    """A `tongban serve` process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [TONGBAN, "serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"],
                stdout=output,
                stderr=output,
            )

    @property
    def worker(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def claims(self) -> list[tuple[int, bool]]:
        """(job id, taken over) of every job this node claimed, in order."""
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "sync job claimed":
                    found.append((event["job"], event["taken_over"]))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def wait_for(condition: object, what: str, timeout: float = 60) -> SyncJob | list[SyncJob]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()  # type: ignore[operator]
        if found:
            return found  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_nodes_run_each_tick_once_and_take_over_a_dead_nodes_job(
    postgres_url: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    source = rows(SOURCE_ROWS)
    write_export(exports / "enrolment-0001.csv", source)
    migrate.upgrade(postgres_url)
    config = write_config(
        tmp_path / "tongban.toml",
        database_url=postgres_url,
        data_dir=tmp_path / "data",
        exports=exports,
        sync={
            "batch_size": 200,
            "lease_seconds": LEASE_SECONDS,
            "heartbeat_seconds": HEARTBEAT_SECONDS,
            "poll_seconds": 0.1,
            # Each run takes about 3 s: long enough to kill a node in the middle of one.
            "max_records_per_second": 2000,
            "misfire_grace_seconds": 0,
        },
        schedules=[
            {"name": "every-4s", "adapter": FILE_ADAPTER, "every_seconds": 4, "mode": "full"}
        ],
    )
    database = Database.from_url(postgres_url)
    jobs = SyncJobRepository(database)
    nodes = [Node(config, tmp_path / "node-a.log"), Node(config, tmp_path / "node-b.log")]
    try:
        # Both nodes run the schedule; every tick gets one job, run by one node.
        wait_for(
            lambda: len(jobs.list_jobs(states=[JobState.SUCCEEDED])) >= 2, "two scheduled runs"
        )
        victim_job = wait_for(
            lambda: next(
                (
                    job
                    for job in jobs.list_jobs(states=[JobState.RUNNING])
                    if job.progress.records_seen >= 1000
                ),
                None,
            ),
            "a job in the middle of its run",
        )
        assert isinstance(victim_job, SyncJob)
        victim = next(node for node in nodes if node.worker == victim_job.worker)
        survivor = next(node for node in nodes if node is not victim)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed_at = time.monotonic()

        taken = wait_for(
            lambda: (job := jobs.get(victim_job.job_id)).worker == survivor.worker and job,
            "the other node to take the job over",
        )
        taken_after = time.monotonic() - killed_at
        finished = wait_for(
            lambda: (job := jobs.get(victim_job.job_id)).state.finished and job,
            "the taken-over job to finish",
        )
    finally:
        for node in nodes:
            node.stop()

    assert isinstance(taken, SyncJob)
    assert isinstance(finished, SyncJob)
    # Not before the dead node's lease ran out (it was renewed up to the kill).
    assert taken_after >= LEASE_SECONDS - HEARTBEAT_SECONDS - 0.2
    assert finished.state is JobState.SUCCEEDED, finished.error
    assert finished.progress.records_seen == SOURCE_ROWS
    assert finished.progress.applied + finished.progress.unchanged == SOURCE_ROWS

    # Each job was claimed by one node only, except the dead node's, taken over once.
    claims: dict[int, list[tuple[str, bool]]] = defaultdict(list)
    for node in nodes:
        for job_id, taken_over in node.claims():
            claims[job_id].append((node.worker, taken_over))
    assert sorted(claims[victim_job.job_id], key=lambda claim: claim[1]) == [
        (victim.worker, False),
        (survivor.worker, True),
    ]
    assert all(
        len(claimed) == 1 for job_id, claimed in claims.items() if job_id != victim_job.job_id
    )

    # One job per schedule tick, whichever node created it.
    with database.engine.connect() as connection:
        per_tick = connection.execute(
            sa.text("SELECT scheduled_for, count(*) FROM sync_jobs GROUP BY scheduled_for")
        ).all()
    assert per_tick
    assert all(count == 1 for _, count in per_tick)
    assert all(job.trigger == "schedule:every-4s" for job in jobs.list_jobs())

    assert store_content(database, FILE_ADAPTER) == expected_content(source)
    database.dispose()
