"""A running sync job whose PostgreSQL connections are killed goes on from its last
committed batch: nothing lost, nothing twice, no restart of anything.

Only this test's own connections are terminated: its store engine names itself with an
`application_name` of its own, and only backends with that name are killed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sync_testkit import (
    ScriptedAdapter,
    adapter_cursor,
    batches_of,
    expected_content,
    record_types,
    rows,
    store_content,
    sync_settings,
    upsert,
)

from certstore import migrate
from certstore.database import Database, create_engine_for
from certstore.sync_jobs import SyncJobRepository
from domain.sync_jobs import JobState, SyncMode
from exchange.sync.runner import SyncRunner

ADAPTER = "scripted"
SOURCE = rows(2000)
BATCHES = batches_of([upsert(row) for row in SOURCE], 50)


async def test_a_running_job_resumes_after_its_connections_are_killed(
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating backends is a PostgreSQL test")
    name = f"tongban_sync_kill_{uuid.uuid4().hex[:12]}"
    url = sa.make_url(database_url).update_query_dict({"application_name": name})
    migrate.upgrade(database_url)
    database = Database.from_url(url.render_as_string(hide_password=False))
    admin = create_engine_for(database_url)
    try:
        repository = SyncJobRepository(database)
        lease = await asyncio.to_thread(
            repository.create_running,
            ADAPTER,
            SyncMode.FULL,
            "manual",
            "node-a:1",
            30,
            datetime.now(UTC),
        )
        adapter = ScriptedAdapter(BATCHES, pause=0.02)
        settings = sync_settings(retry_attempts=20)
        runner = SyncRunner(repository, adapter, record_types(), settings)
        task = asyncio.create_task(runner.run(lease))

        def kill_mine() -> int:
            with admin.begin() as connection:
                return len(
                    connection.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    ).all()
                )

        killed = 0
        for _ in range(3000):
            if task.done():
                break
            job = await asyncio.to_thread(repository.get, lease.job.job_id)
            if job.progress.records_seen >= 200 * (killed + 1) and killed < 5:
                killed += await asyncio.to_thread(kill_mine)
            await asyncio.sleep(0.01)
        job = await asyncio.wait_for(task, 120)

        assert killed >= 1  # the test did cut the job's connections
        assert job.state is JobState.SUCCEEDED, job.error
        assert (job.progress.records_seen, job.progress.applied) == (2000, 2000)
        assert adapter_cursor(database, ADAPTER) == str(len(BATCHES))
        assert store_content(database, ADAPTER) == expected_content(SOURCE)
    finally:
        database.dispose()
        admin.dispose()
