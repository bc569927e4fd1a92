"""`SyncJobRepository` on every backend: claims and leases shared by nodes, schedule
ticks created once, cancel, listing, and the one-running-job-per-adapter rule."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from certstore.database import Database
from certstore.sync_jobs import AdapterBusy, LeaseLost, SyncJobRepository
from domain.errors import FailedPrecondition, NotFound
from domain.sync_jobs import JobLease, JobState, SyncBatch, SyncMode

T = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
LEASE = 30.0


@pytest.fixture
def jobs(database: Database) -> SyncJobRepository:
    return SyncJobRepository(database)


def test_a_claim_takes_the_oldest_pending_job_and_stamps_the_lease(
    jobs: SyncJobRepository,
) -> None:
    first = jobs.create("a", SyncMode.INCREMENTAL, "manual", T)
    jobs.create("b", SyncMode.FULL, "manual", T)
    assert first is not None

    lease = jobs.claim("node-1:7", ["a", "b"], LEASE, T)

    assert lease is not None
    assert lease.job.job_id == first.job_id
    assert (lease.job.state, lease.job.worker, lease.taken_over) == (
        JobState.RUNNING,
        "node-1:7",
        False,
    )
    assert lease.job.started_at == T
    assert lease.job.lease_expires_at == T + timedelta(seconds=LEASE)


def test_only_adapters_the_node_has_are_claimed(jobs: SyncJobRepository) -> None:
    jobs.create("elsewhere", SyncMode.FULL, "manual", T)

    assert jobs.claim("node-1:7", ["here"], LEASE, T) is None
    assert jobs.claim("node-1:7", [], LEASE, T) is None


def test_an_incremental_job_starts_at_the_adapters_cursor(jobs: SyncJobRepository) -> None:
    lease = jobs.create_running("a", SyncMode.FULL, "manual", "n:1", LEASE, T)
    jobs.commit_batch(
        lease,
        SyncBatch(cursor="file-1.csv:500", changes_read=0),
        department="d",
        records_per_second=0.0,
        lease_seconds=LEASE,
        now=T,
        supersede_dead_letters=False,
    )
    jobs.finish(lease, JobState.SUCCEEDED, T)
    jobs.create("a", SyncMode.INCREMENTAL, "manual", T)
    jobs.create("a", SyncMode.FULL, "manual", T)

    incremental = jobs.claim("n:1", ["a"], LEASE, T)
    assert incremental is not None
    jobs.finish(incremental, JobState.SUCCEEDED, T)
    full = jobs.claim("n:1", ["a"], LEASE, T)
    assert full is not None

    assert incremental.job.cursor == "file-1.csv:500"
    assert full.job.cursor is None


def test_one_job_per_adapter_runs_at_a_time(jobs: SyncJobRepository) -> None:
    jobs.create("a", SyncMode.FULL, "manual", T)
    second = jobs.create("a", SyncMode.INCREMENTAL, "manual", T)
    running = jobs.claim("n:1", ["a"], LEASE, T)
    assert running is not None
    assert second is not None

    assert jobs.claim("n:2", ["a"], LEASE, T) is None
    with pytest.raises(AdapterBusy, match=f"job {running.job.job_id} on n:1"):
        jobs.create_running("a", SyncMode.FULL, "manual", "cli:3", LEASE, T)

    jobs.finish(running, JobState.SUCCEEDED, T)
    after = jobs.claim("n:2", ["a"], LEASE, T)
    assert after is not None
    assert after.job.job_id == second.job_id


def test_a_dead_nodes_job_is_taken_over_after_its_lease_expires(
    jobs: SyncJobRepository,
) -> None:
    jobs.create("a", SyncMode.FULL, "manual", T)
    dead = jobs.claim("n:1", ["a"], LEASE, T)
    assert dead is not None
    jobs.renew(dead, LEASE, T + timedelta(seconds=20))

    assert jobs.claim("n:2", ["a"], LEASE, T + timedelta(seconds=49)) is None
    later = T + timedelta(seconds=51)
    taken = jobs.claim("n:2", ["a"], LEASE, later)

    assert taken is not None
    assert (taken.job.job_id, taken.job.worker, taken.taken_over) == (
        dead.job.job_id,
        "n:2",
        True,
    )
    # The dead node's lease is worthless now: nothing it sends is committed.
    with pytest.raises(LeaseLost):
        jobs.renew(dead, LEASE, later)
    with pytest.raises(LeaseLost):
        jobs.finish(dead, JobState.SUCCEEDED, later)
    assert jobs.get(dead.job.job_id).worker == "n:2"


def test_take_over_needs_an_expired_lease_unless_forced(jobs: SyncJobRepository) -> None:
    lease = jobs.create_running("a", SyncMode.FULL, "manual", "n:1", LEASE, T)

    with pytest.raises(FailedPrecondition, match="held by n:1"):
        jobs.take_over(lease.job.job_id, "n:2", LEASE, T, force=False)
    forced = jobs.take_over(lease.job.job_id, "n:2", LEASE, T, force=True)

    assert forced.taken_over
    with pytest.raises(NotFound):
        jobs.take_over(999, "n:2", LEASE, T, force=True)


def test_concurrent_claims_never_hand_one_job_to_two_nodes(
    database: Database, jobs: SyncJobRepository
) -> None:
    for adapter in "abcdefgh":
        for _ in range(3):
            jobs.create(adapter, SyncMode.INCREMENTAL, "manual", T)
    claimed: list[JobLease] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def node(name: str) -> None:
        repository = SyncJobRepository(database)
        barrier.wait()
        for _ in range(10):
            lease = repository.claim(name, list("abcdefgh"), LEASE, T)
            if lease is not None:
                with lock:
                    claimed.append(lease)

    threads = [threading.Thread(target=node, args=(f"n:{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [lease.job.job_id for lease in claimed]
    assert len(ids) == len(set(ids)) == 8
    assert sorted(lease.job.adapter_id for lease in claimed) == list("abcdefgh")
    assert len(jobs.list_jobs(states=[JobState.RUNNING])) == 8


def test_a_schedule_tick_gets_one_job_however_many_nodes_ask(jobs: SyncJobRepository) -> None:
    created = [
        jobs.create("a", SyncMode.FULL, "schedule:nightly", T, scheduled_for=T) for _ in range(3)
    ]

    assert [job is not None for job in created] == [True, False, False]


def test_ticks_coalesce_while_the_schedule_has_a_job_waiting(jobs: SyncJobRepository) -> None:
    tick = "schedule:hourly"
    first = jobs.create("a", SyncMode.INCREMENTAL, tick, T, scheduled_for=T)
    skipped = jobs.create("a", SyncMode.INCREMENTAL, tick, T, scheduled_for=T + timedelta(hours=1))
    assert first is not None
    lease = jobs.claim("n:1", ["a"], LEASE, T)
    assert lease is not None
    # Running is not waiting: the next tick gets its job (it waits for the adapter).
    queued = jobs.create("a", SyncMode.INCREMENTAL, tick, T, scheduled_for=T + timedelta(hours=2))

    assert skipped is None
    assert queued is not None
    assert queued.state is JobState.PENDING


def test_cancel_a_pending_job_ends_it_and_a_running_one_is_flagged(
    jobs: SyncJobRepository,
) -> None:
    pending = jobs.create("a", SyncMode.FULL, "manual", T)
    running = jobs.create_running("b", SyncMode.FULL, "manual", "n:1", LEASE, T)
    assert pending is not None

    cancelled = jobs.request_cancel(pending.job_id, T)
    flagged = jobs.request_cancel(running.job.job_id, T)

    assert (cancelled.state, cancelled.finished_at) == (JobState.CANCELLED, T)
    assert (flagged.state, flagged.cancel_requested) == (JobState.RUNNING, True)
    assert jobs.renew(running, LEASE, T).cancel_requested
    # A running job whose node is gone has nobody to stop it: it ends at once.
    orphan = jobs.request_cancel(running.job.job_id, T + timedelta(seconds=LEASE + 1))
    assert orphan.state is JobState.CANCELLED
    with pytest.raises(FailedPrecondition, match="ended already"):
        jobs.request_cancel(pending.job_id, T)
    with pytest.raises(NotFound):
        jobs.request_cancel(12345, T)


def test_jobs_list_newest_first_by_adapter_and_state_in_pages(
    jobs: SyncJobRepository,
) -> None:
    made = [jobs.create(adapter, SyncMode.FULL, "manual", T) for adapter in "abab"]
    ids = [job.job_id for job in made if job is not None]
    lease = jobs.claim("n:1", ["b"], LEASE, T)
    assert lease is not None

    first_page = jobs.list_jobs(limit=3)
    second_page = jobs.list_jobs(limit=3, before_id=first_page[-1].job_id)

    assert [job.job_id for job in first_page + second_page] == ids[::-1]
    assert [job.job_id for job in jobs.list_jobs(adapter_id="a")] == [ids[2], ids[0]]
    assert [job.job_id for job in jobs.list_jobs(states=[JobState.RUNNING])] == [ids[1]]
    with pytest.raises(NotFound):
        jobs.get(999)


def test_a_released_job_is_pending_again_and_resumes_where_it_was(
    jobs: SyncJobRepository,
) -> None:
    lease = jobs.create_running("a", SyncMode.FULL, "manual", "n:1", LEASE, T)
    jobs.commit_batch(
        lease,
        SyncBatch(cursor="7", changes_read=70),
        department="d",
        records_per_second=12.5,
        lease_seconds=LEASE,
        now=T,
        supersede_dead_letters=False,
    )

    released = jobs.release(lease, T)
    again = jobs.claim("n:2", ["a"], LEASE, T)

    assert released.state is JobState.PENDING
    assert again is not None
    assert (again.job.cursor, again.job.progress.records_seen) == ("7", 70)
    assert again.job.started_at == T
