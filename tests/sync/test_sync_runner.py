"""`SyncRunner` on a real store: retries from the committed cursor, failures that keep
their progress, cancel and shutdown at batch boundaries, a lost lease, dead letters."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from sync_testkit import (
    RECORD_TYPE,
    ScriptedAdapter,
    adapter_cursor,
    batches_of,
    delete,
    expected_content,
    record_types,
    rejected,
    rows,
    run_job,
    store_content,
    sync_settings,
    upsert,
)

from adapters.base import Change, ChangeKind
from certstore.database import Database
from certstore.field_cipher import FieldCipher
from certstore.records import RecordRepository
from certstore.sync_jobs import SyncJobRepository
from domain.errors import AdapterError
from domain.records import SourceRecord
from domain.subjects import KeyKind, parse_key
from domain.sync_jobs import DeadLetterState, JobState, SyncJob, SyncMode
from exchange.record_types import RecordTypes
from exchange.settings import RecordTypeSettings
from exchange.sync.replay import replay_dead_letter
from exchange.sync.runner import SyncRunner

ADAPTER = "scripted"
SOURCE = rows(500)
BATCHES = batches_of([upsert(row) for row in SOURCE], 50)


def transient(text: str = "connection refused") -> AdapterError:
    return AdapterError(ADAPTER, text, retryable=True)


def now() -> datetime:
    return datetime.now(UTC)


async def start(
    database: Database, adapter: ScriptedAdapter, **settings: object
) -> tuple[SyncJobRepository, SyncRunner, asyncio.Task[SyncJob], int]:
    repository = SyncJobRepository(database)
    lease = await asyncio.to_thread(
        repository.create_running, ADAPTER, SyncMode.FULL, "manual", "node-a:1", 30, now()
    )
    runner = SyncRunner(repository, adapter, record_types(), sync_settings(**settings))
    return repository, runner, asyncio.create_task(runner.run(lease)), lease.job.job_id


async def wait_for_progress(repository: SyncJobRepository, job_id: int, seen: int) -> SyncJob:
    for _ in range(500):
        job = await asyncio.to_thread(repository.get, job_id)
        if job.progress.records_seen >= seen:
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never saw {seen} records")


async def test_transient_failures_resume_from_the_committed_cursor(database: Database) -> None:
    adapter = ScriptedAdapter(
        BATCHES, failures={3: [transient(), transient()], 7: [transient("timed out")]}
    )

    job = await run_job(database, adapter, SyncMode.FULL, settings=sync_settings(retry_attempts=3))

    assert job.state is JobState.SUCCEEDED, job.error
    # Each restart read on from the last committed batch: nothing twice, nothing lost.
    assert adapter.streams_started == [None, "3", "3", "7"]
    assert (job.progress.records_seen, job.progress.applied) == (500, 500)
    assert store_content(database, ADAPTER) == expected_content(SOURCE)


async def test_a_job_that_keeps_failing_ends_failed_and_keeps_its_progress(
    database: Database,
) -> None:
    failing = ScriptedAdapter(BATCHES, failures={4: [transient()] * 10})

    job = await run_job(database, failing, SyncMode.FULL, settings=sync_settings(retry_attempts=3))

    assert job.state is JobState.FAILED
    assert job.error == f"adapter {ADAPTER}: connection refused"
    assert len(failing.streams_started) == 3
    assert (job.progress.records_seen, job.cursor) == (200, "4")
    assert adapter_cursor(database, ADAPTER) == "4"
    assert store_content(database, ADAPTER) == expected_content(SOURCE[:200])

    # Once the source is back, the next incremental job goes on from there.
    healed = ScriptedAdapter(BATCHES)
    resumed = await run_job(database, healed, SyncMode.INCREMENTAL)

    assert healed.streams_started == ["4"]
    assert (resumed.state, resumed.progress.records_seen) == (JobState.SUCCEEDED, 300)
    assert store_content(database, ADAPTER) == expected_content(SOURCE)


async def test_a_permanent_failure_fails_the_job_at_once(database: Database) -> None:
    adapter = ScriptedAdapter(
        BATCHES, failures={2: [AdapterError(ADAPTER, "no table t_enrolment")]}
    )

    job = await run_job(database, adapter, SyncMode.FULL)

    assert (job.state, job.error) == (JobState.FAILED, "adapter scripted: no table t_enrolment")
    assert adapter.streams_started == [None]
    assert job.progress.records_seen == 100


async def test_cancel_stops_at_a_batch_boundary_with_the_cursor_committed(
    database: Database,
) -> None:
    repository = SyncJobRepository(database)
    lease = await asyncio.to_thread(
        repository.create_running, ADAPTER, SyncMode.INCREMENTAL, "manual", "node-a:1", 30, now()
    )
    runner = SyncRunner(repository, ScriptedAdapter(BATCHES), record_types(), sync_settings())

    def cancel_after_three_batches(job: SyncJob) -> None:
        if job.progress.records_seen == 150:
            runner.cancel()

    runner._on_progress = cancel_after_three_batches
    job = await runner.run(lease)

    assert (job.state, job.progress.records_seen, job.cursor) == (JobState.CANCELLED, 150, "3")
    assert adapter_cursor(database, ADAPTER) == "3"
    assert store_content(database, ADAPTER) == expected_content(SOURCE[:150])


async def test_cancel_through_the_store_reaches_the_running_node(database: Database) -> None:
    repository, _, task, job_id = await start(database, ScriptedAdapter(BATCHES, pause=0.05))
    await wait_for_progress(repository, job_id, 100)

    flagged = await asyncio.to_thread(repository.request_cancel, job_id, now())
    job = await task

    assert (flagged.state, flagged.cancel_requested) == (JobState.RUNNING, True)
    assert job.state is JobState.CANCELLED
    assert 100 <= job.progress.records_seen < 500
    assert adapter_cursor(database, ADAPTER) == job.cursor


async def test_a_stopping_node_gives_its_job_back_and_another_finishes_it(
    database: Database,
) -> None:
    repository, runner, task, job_id = await start(database, ScriptedAdapter(BATCHES, pause=0.02))
    await wait_for_progress(repository, job_id, 100)

    runner.stop()
    released = await task

    assert released.state is JobState.PENDING
    assert 100 <= released.progress.records_seen < 500
    lease = await asyncio.to_thread(repository.claim, "node-b:2", [ADAPTER], 30, now())
    assert lease is not None
    assert lease.job.job_id == job_id
    assert lease.job.cursor == released.cursor
    adapter = ScriptedAdapter(BATCHES)
    finished = await SyncRunner(repository, adapter, record_types(), sync_settings()).run(lease)

    assert adapter.streams_started == [released.cursor]
    assert (finished.state, finished.worker) == (JobState.SUCCEEDED, "node-b:2")
    # Counts cover the whole job, across both nodes, each change once.
    assert (finished.progress.records_seen, finished.progress.applied) == (500, 500)
    assert store_content(database, ADAPTER) == expected_content(SOURCE)


async def test_a_node_that_lost_its_lease_commits_nothing_more(database: Database) -> None:
    repository, _, task, job_id = await start(database, ScriptedAdapter(BATCHES, pause=0.03))
    await wait_for_progress(repository, job_id, 100)

    # Node B decides node A is dead (its lease expired while it stalled) and takes over.
    lease_b = await asyncio.to_thread(
        repository.take_over, job_id, "node-b:2", 30, now(), force=True
    )
    left_by_a = await task
    cursor_a = (await asyncio.to_thread(repository.get, job_id)).cursor

    assert (left_by_a.state, left_by_a.worker) == (JobState.RUNNING, "node-b:2")
    assert cursor_a == lease_b.job.cursor
    finished = await SyncRunner(
        repository, ScriptedAdapter(BATCHES), record_types(), sync_settings()
    ).run(lease_b)
    assert (finished.state, finished.progress.records_seen) == (JobState.SUCCEEDED, 500)
    assert store_content(database, ADAPTER) == expected_content(SOURCE)


async def test_changes_to_one_record_in_one_batch_collapse_to_the_last(
    database: Database,
) -> None:
    first, second = rows(2)
    initial = [upsert(first), upsert(second)]
    await run_job(database, ScriptedAdapter([initial]), SyncMode.FULL)
    changed = second.changed()

    job = await run_job(
        database,
        ScriptedAdapter(
            [initial, [upsert(first.changed()), delete(first), delete(second), upsert(changed)]]
        ),
        SyncMode.INCREMENTAL,
    )

    assert (job.progress.applied, job.progress.withdrawn) == (1, 1)
    assert store_content(database, ADAPTER) == expected_content([changed], [first])


async def test_bad_rows_are_dead_lettered_with_reason_and_row_and_the_job_goes_on(
    database: Database,
) -> None:
    good = rows(6)
    undeclared = SourceRecord(
        RECORD_TYPE,
        "S-X1",
        parse_key(KeyKind.ID_CARD, good[0].key),
        {**good[0].fields, "remark": "补录"},
    )
    unhashable = SourceRecord(
        RECORD_TYPE, "S-X2", parse_key(KeyKind.ID_CARD, good[1].key), {"status": "\ud800"}
    )
    raw = {"参保编号": "S-X3", "证件号码": "110105194912310021"}
    adapter = ScriptedAdapter(
        [
            [upsert(row) for row in good[:3]],
            [
                rejected("S-X3", "key field '证件号码': ID_CARD: bad check character", raw),
                upsert(good[3]),
                # Broken rows a record type refuses, and fields no canonical JSON can hold.
                _change(undeclared),
                _change(unhashable),
            ],
            [upsert(row) for row in good[4:]],
        ]
    )

    job = await run_job(database, adapter, SyncMode.FULL)

    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.progress.applied, job.progress.dead_lettered) == (6, 3)
    assert store_content(database, ADAPTER) == expected_content(good)
    repository = SyncJobRepository(database)
    letters = {letter.source_record_id: letter for letter in repository.dead_letters(ADAPTER)}
    assert letters["S-X3"].reason == "key field '证件号码': ID_CARD: bad check character"
    assert letters["S-X3"].raw == raw
    assert letters["S-X1"].reason == f"field 'remark' is not declared for {RECORD_TYPE}"
    kept = letters["S-X1"].record
    assert kept is not None
    assert kept["fields"]["remark"] == "补录"
    assert "canonical JSON" in letters["S-X2"].reason
    assert {letter.job_id for letter in letters.values()} == {job.job_id}

    # The hub's configuration is fixed to declare the field: the kept record replays.
    fixed_types = RecordTypes(
        {
            RECORD_TYPE: RecordTypeSettings(
                fields={**record_types().declared[RECORD_TYPE].fields, "remark": "string"}
            )
        }
    )
    replayed = await replay_dead_letter(
        repository, adapter, fixed_types, letters["S-X1"].dead_letter_id
    )
    assert replayed.state is DeadLetterState.REPLAYED
    assert store_content(database, ADAPTER)["S-X1"].fields["remark"] == "补录"

    # The source fixes the other row itself: the next sync closes its dead letter.
    fixed = SourceRecord(RECORD_TYPE, "S-X3", parse_key(KeyKind.ID_CARD, good[2].key), {})
    await run_job(
        database, ScriptedAdapter([*adapter.batches, [_change(fixed)]]), SyncMode.INCREMENTAL
    )
    states = {
        letter.source_record_id: letter.state
        for letter in repository.dead_letters(ADAPTER, states=())
    }
    assert states == {
        "S-X1": DeadLetterState.REPLAYED,
        "S-X2": DeadLetterState.OPEN,
        "S-X3": DeadLetterState.SUPERSEDED,
    }


async def test_progress_knows_the_total_and_the_eta_when_the_source_does(
    database: Database,
) -> None:
    seen: list[SyncJob] = []
    adapter = ScriptedAdapter(BATCHES, total=500, pause=0.01)

    await run_job(database, adapter, SyncMode.FULL, on_progress=seen.append)

    running = [job for job in seen if job.state is JobState.RUNNING]
    assert [job.progress.records_seen for job in running] == list(range(50, 501, 50))
    assert {job.progress.total_estimate for job in running} == {500}
    assert all(job.progress.records_per_second > 0 for job in running[1:])
    eta = running[4].progress.eta_seconds
    assert eta is not None
    assert 0 < eta < 10


async def test_a_rate_ceiling_spares_the_source(database: Database) -> None:
    adapter = ScriptedAdapter(batches_of([upsert(row) for row in SOURCE[:300]], 50))
    started = time.monotonic()

    job = await run_job(
        database, adapter, SyncMode.FULL, settings=sync_settings(max_records_per_second=1000)
    )

    assert job.state is JobState.SUCCEEDED
    assert time.monotonic() - started >= 0.25


def _change(record: SourceRecord) -> Change:
    return Change(ChangeKind.UPSERT, record.record_type, record.source_record_id, record)


async def test_records_are_sealed_at_rest_when_the_hub_encrypts_them(
    database: Database,
) -> None:
    cipher = FieldCipher({"k1": b"\x07" * 32}, "k1")
    repository = SyncJobRepository(database, cipher)
    lease = await asyncio.to_thread(
        repository.create_running, ADAPTER, SyncMode.FULL, "manual", "n:1", 30, now()
    )
    await SyncRunner(repository, ScriptedAdapter(BATCHES[:1]), record_types(), sync_settings()).run(
        lease
    )

    stored = store_content(database, ADAPTER)
    found = RecordRepository(database, cipher).find(parse_key(KeyKind.ID_CARD, SOURCE[0].key))

    assert all(record.fields.get("$sealed") == "A256GCM" for record in stored.values())
    assert [record.fields for record in found] == [SOURCE[0].fields]


async def test_a_cancel_from_another_connection_stops_the_job_within_two_batches(
    database: Database, database_url: str
) -> None:
    # As from a hub node other than the one running the job: its own engine.
    batch = 500
    source = rows(20_000)
    adapter = ScriptedAdapter(batches_of([upsert(row) for row in source], batch), pause=0.01)
    repository, _, task, job_id = await start(database, adapter)
    other = Database.from_url(database_url)
    try:
        await wait_for_progress(repository, job_id, 2 * batch)
        flagged = await asyncio.to_thread(SyncJobRepository(other).request_cancel, job_id, now())
        job = await task
    finally:
        other.dispose()

    assert job.state is JobState.CANCELLED
    # The batch being committed when the flag landed, then the boundary after it.
    assert job.progress.records_seen <= flagged.progress.records_seen + 2 * batch
    assert adapter_cursor(database, ADAPTER) == job.cursor
