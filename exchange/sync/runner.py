"""`SyncRunner`: runs one claimed sync job, batch by batch, to its end.

The adapter's change stream is read a few batches ahead (a bounded queue, so memory
stays flat) while the current batch is committed in a worker thread. Each batch is
sorted out first: changes to one record collapse to the last, rows the adapter
rejected and records that break their declared type become dead letters. The batch is
then committed together with the advanced cursor (`SyncJobRepository.commit_batch`).

Transient failures (an unreachable source, a store that hiccups) restart the stream
from the last committed cursor after a backoff with jitter; only failures since the
last committed batch count towards `retry_attempts`, so a long job survives many
unrelated hiccups. A job that keeps failing, or fails for good, ends FAILED with the
error and keeps its progress and cursor.

The job ends SUCCEEDED when the stream is exhausted (a FULL job then withdraws what it
did not see), CANCELLED when someone asked at a batch boundary, and goes back to
PENDING when the node stops (another node, or this one restarted, resumes it). A node
that lost its lease stops at once and touches the job no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from adapters.base import Adapter, Change, ChangeBatch, ChangeKind
from adapters.mapping import raw_row
from certstore.sync_jobs import LeaseLost, SyncJobRepository
from domain.errors import AdapterError, InvalidRequest, StoreError, TongbanError
from domain.records import SourceRecord, content_hash
from domain.sync_jobs import (
    BatchOutcome,
    DeadLetterDraft,
    JobLease,
    JobState,
    SyncBatch,
    SyncJob,
)
from exchange.record_types import RecordTypes
from exchange.settings import SyncSettings
from exchange.sync.metrics import SYNC_BATCH_SECONDS, SYNC_JOBS, SYNC_RATE, SYNC_RECORDS
from exchange.sync.progress import RateMeter

__all__ = ["PREFETCH_BATCHES", "SyncRunner", "record_document", "sort_out"]

log = structlog.get_logger("tongban.sync")

PREFETCH_BATCHES: Final = 2
"""Batches read ahead of the one being committed."""

ProgressCallback = Callable[[SyncJob], None]
_Identity = tuple[str, str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Stopped(Exception):
    """The run stops at a batch boundary (cancel or shutdown); the cursor is committed."""


@dataclass(frozen=True)
class _End:
    """The change stream is exhausted."""


@dataclass(frozen=True)
class _Failure:
    """Reading the change stream failed with `error`."""

    error: BaseException


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, AdapterError):
        return exc.retryable
    return isinstance(exc, StoreError)


class SyncRunner:
    """Runs one job for the node holding its lease. One runner per job and run."""

    def __init__(
        self,
        repository: SyncJobRepository,
        adapter: Adapter,
        record_types: RecordTypes,
        settings: SyncSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._repository = repository
        self._adapter = adapter
        self._record_types = record_types
        self._settings = settings
        self._clock = clock
        self._on_progress = on_progress
        self._cancel = False
        self._stop = False
        self._lease_lost = False
        self._supersede = False
        self._streak_start = 0
        self._attempt = 0

    def cancel(self) -> None:
        """Stop at the next batch boundary and end the job CANCELLED."""
        self._cancel = True

    def stop(self) -> None:
        """Stop at the next batch boundary and give the job back (PENDING) to resume."""
        self._stop = True

    async def run(self, lease: JobLease) -> SyncJob:
        """Run the job `lease` holds until it ends or the node stops; return it as left.

        Job failures do not raise: they end the job FAILED. Raises `StoreError` only
        when the end state itself cannot be written (the lease then expires and
        another node finishes the job).
        """
        job = lease.job
        bound = log.bind(job=job.job_id, adapter=job.adapter_id, mode=job.mode.value)
        bound.info(
            "sync job running",
            worker=lease.worker,
            resumed_from=job.cursor,
            taken_over=lease.taken_over,
        )
        self._supersede = (
            await asyncio.to_thread(self._repository.open_dead_letter_count, job.adapter_id) > 0
        )
        meter = RateMeter()
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        state, error = JobState.SUCCEEDED, ""
        try:
            await self._run_with_retries(lease, meter)
        except _Stopped:
            state = JobState.CANCELLED
        except LeaseLost:
            self._lease_lost = True
        except TongbanError as exc:
            state, error = JobState.FAILED, exc.message
        except Exception as exc:  # a bug must not leave the job RUNNING until its lease ends
            bound.exception("sync job crashed")
            state, error = JobState.FAILED, f"internal error ({type(exc).__name__}); see the log"
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self._lease_lost:
            bound.warning("sync job lost its lease; another node resumes it")
            return await asyncio.to_thread(self._repository.get, job.job_id)
        if state is JobState.CANCELLED and self._stop and not self._cancel:
            try:
                released = await asyncio.to_thread(self._repository.release, lease, self._clock())
            except LeaseLost:
                return await asyncio.to_thread(self._repository.get, job.job_id)
            bound.info("sync job released at a batch boundary", cursor=released.cursor)
            return released
        try:
            ended = await asyncio.to_thread(
                self._repository.finish, lease, state, self._clock(), error
            )
        except LeaseLost:
            return await asyncio.to_thread(self._repository.get, job.job_id)
        SYNC_RATE.labels(adapter=job.adapter_id).set(0)
        progress = ended.progress
        (bound.info if state is not JobState.FAILED else bound.error)(
            "sync job ended",
            state=ended.state.value,
            error=ended.error or None,
            records_seen=progress.records_seen,
            applied=progress.applied,
            unchanged=progress.unchanged,
            dead_lettered=progress.dead_lettered,
            withdrawn=progress.withdrawn,
            cursor=ended.cursor,
        )
        SYNC_JOBS.labels(adapter=job.adapter_id, state=ended.state.value).inc()
        self._report(ended)
        return ended

    # --- the stream, with retries -------------------------------------------------------------

    async def _run_with_retries(self, lease: JobLease, meter: RateMeter) -> SyncJob:
        retrying = AsyncRetrying(
            stop=self._streak_exhausted,
            wait=self._backoff,
            retry=retry_if_exception(_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        job = lease.job
        async for attempt in retrying:
            with attempt:
                self._attempt = attempt.retry_state.attempt_number
                # Every attempt starts from what is committed, not from what was read.
                current = await asyncio.to_thread(self._repository.get, job.job_id)
                if current.state is not JobState.RUNNING:
                    raise LeaseLost(job.job_id)
                job = await self._stream(lease, current, meter)
        return job

    def _streak_exhausted(self, state: RetryCallState) -> bool:
        return state.attempt_number - self._streak_start >= self._settings.retry_attempts

    def _backoff(self, state: RetryCallState) -> float:
        streak = max(1, state.attempt_number - self._streak_start)
        ceiling = min(
            self._settings.retry_max_seconds,
            self._settings.retry_initial_seconds * 2.0 ** min(streak - 1, 30),
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "sync job retrying after a transient failure",
            adapter=self._adapter.adapter_id,
            error=error.message if isinstance(error, TongbanError) else repr(error),
            failures_in_a_row=state.attempt_number - self._streak_start,
            wait_seconds=round(state.upcoming_sleep, 2),
        )

    async def _stream(self, lease: JobLease, job: SyncJob, meter: RateMeter) -> SyncJob:
        """Read from the job's committed cursor and commit batch by batch to the end."""
        queue: asyncio.Queue[ChangeBatch | _End | _Failure] = asyncio.Queue(PREFETCH_BATCHES)
        reader = asyncio.create_task(self._read(job.cursor, queue))
        started = time.monotonic()
        read_at_start = meter.count
        try:
            while True:
                if self._cancel or self._stop:
                    raise _Stopped
                item = await queue.get()
                if isinstance(item, _End):
                    return job
                if isinstance(item, _Failure):
                    raise item.error
                job = await self._commit(lease, item, meter)
                # Progress ends a failure streak: only failures in a row count.
                self._streak_start = self._attempt - 1
                if job.cancel_requested:
                    self._cancel = True
                await self._throttle(started, meter.count - read_at_start)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self, cursor: str | None, queue: asyncio.Queue[ChangeBatch | _End | _Failure]
    ) -> None:
        stream: AsyncIterator[ChangeBatch] = self._adapter.changes(
            cursor, batch_size=self._settings.batch_size
        )
        try:
            async for batch in stream:
                await queue.put(batch)
            await queue.put(_End())
        except TongbanError as exc:
            await queue.put(_Failure(exc))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _commit(self, lease: JobLease, batch: ChangeBatch, meter: RateMeter) -> SyncJob:
        adapter = self._adapter
        sorted_out = sort_out(batch, adapter, self._record_types)
        started = time.perf_counter()
        rate = meter.rate_with(len(batch.changes))
        outcome = await asyncio.to_thread(self._commit_sorted, lease, sorted_out, rate)
        meter.add(len(batch.changes))
        SYNC_BATCH_SECONDS.labels(adapter=adapter.adapter_id).observe(time.perf_counter() - started)
        counter = SYNC_RECORDS
        counter.labels(adapter=adapter.adapter_id, outcome="applied").inc(outcome.applied)
        counter.labels(adapter=adapter.adapter_id, outcome="unchanged").inc(outcome.unchanged)
        counter.labels(adapter=adapter.adapter_id, outcome="withdrawn").inc(outcome.withdrawn)
        counter.labels(adapter=adapter.adapter_id, outcome="dead_lettered").inc(
            outcome.dead_lettered
        )
        SYNC_RATE.labels(adapter=adapter.adapter_id).set(rate)
        if outcome.dead_lettered:
            self._supersede = True
        self._report(outcome.job)
        return outcome.job

    def _commit_sorted(self, lease: JobLease, batch: SyncBatch, rate: float) -> BatchOutcome:
        """Commit `batch`; records whose fields cannot be hashed become dead letters."""
        settings = self._settings
        try:
            return self._repository.commit_batch(
                lease,
                batch,
                department=self._adapter.spec.department,
                records_per_second=rate,
                lease_seconds=settings.lease_seconds,
                now=self._clock(),
                supersede_dead_letters=self._supersede,
            )
        except InvalidRequest:
            batch = _without_unhashable(batch)
            self._supersede = self._supersede or bool(batch.dead_letters)
            return self._repository.commit_batch(
                lease,
                batch,
                department=self._adapter.spec.department,
                records_per_second=rate,
                lease_seconds=settings.lease_seconds,
                now=self._clock(),
                supersede_dead_letters=self._supersede,
            )

    async def _throttle(self, started: float, records: int) -> None:
        ceiling = self._settings.max_records_per_second
        if ceiling is None:
            return
        ahead = records / ceiling - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def _heartbeat(self, lease: JobLease) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(settings.heartbeat_seconds)
            try:
                job = await asyncio.to_thread(
                    self._repository.renew, lease, settings.lease_seconds, self._clock()
                )
            except LeaseLost:
                self._lease_lost = True
                self._stop = True
                return
            except StoreError as exc:
                log.warning("sync job heartbeat failed", job=lease.job.job_id, error=exc.message)
                continue
            if job.cancel_requested:
                self._cancel = True

    def _report(self, job: SyncJob) -> None:
        if self._on_progress is not None:
            self._on_progress(job)


# --- sorting a batch out ------------------------------------------------------------------


def sort_out(batch: ChangeBatch, adapter: Adapter, record_types: RecordTypes) -> SyncBatch:
    """What `batch` asks of the store: upserts, deletions and dead letters.

    Changes to one record collapse to the last one. A record refused for a rule becomes
    a dead letter; when a good change of the same record follows it in the batch, the
    dead letter is dropped (the good change wins), and when the bad one comes last the
    earlier good one is still applied, as applying them one by one would.
    """
    latest: dict[_Identity, Change] = {}
    refused: dict[_Identity, DeadLetterDraft] = {}
    served = adapter.spec.serves
    signed = bool(adapter.spec.department_keys)
    for change in batch.changes:
        identity = (change.record_type, change.source_record_id)
        if change.kind is ChangeKind.REJECTED:
            refused[identity] = DeadLetterDraft(
                change.record_type,
                change.source_record_id,
                change.reason or "the adapter rejected the row",
                raw=change.raw,
            )
            continue
        record = change.record
        if change.kind is ChangeKind.UPSERT:
            problem = _problem(record, served, record_types)
            if problem is None and record is not None:
                if signed:
                    problem = adapter.signature_problem(record)
                elif record.signature is not None:
                    # Nobody can check it here: never keep a signature the hub did not verify.
                    change = dataclasses.replace(
                        change, record=dataclasses.replace(record, signature=None)
                    )
            if problem is not None:
                refused[identity] = DeadLetterDraft(
                    change.record_type,
                    change.source_record_id,
                    problem,
                    raw=change.raw,
                    record=None if record is None else record_document(record),
                )
                continue
        latest[identity] = change
        refused.pop(identity, None)
    upserts = tuple(
        change.record
        for change in latest.values()
        if change.kind is ChangeKind.UPSERT and change.record is not None
    )
    deletions = tuple(
        identity for identity, change in latest.items() if change.kind is ChangeKind.DELETE
    )
    return SyncBatch(
        cursor=batch.cursor,
        changes_read=len(batch.changes),
        upserts=upserts,
        deletions=deletions,
        dead_letters=tuple(refused.values()),
        remaining_estimate=batch.total_estimate,
        signed=signed,
    )


def _problem(
    record: SourceRecord | None,
    served: Mapping[str, object],
    record_types: RecordTypes,
) -> str | None:
    if record is None:
        return "an upsert without a record"
    if record.record_type not in served:
        return f"the adapter does not serve {record.record_type}"
    if not record.source_record_id:
        return "no source record id"
    return record_types.problem(record)


def record_document(record: SourceRecord) -> dict[str, Any]:
    """A JSON-friendly copy of `record` for a dead letter, replayable after a fix."""
    return {
        "record_type": record.record_type,
        "source_record_id": record.source_record_id,
        "subject": {"kind": record.subject.kind.value, "value": record.subject.value},
        "related_subjects": [
            {"kind": key.kind.value, "value": key.value} for key in record.related_subjects
        ],
        "fields": raw_row(record.fields),
        "updated_at": None if record.updated_at is None else record.updated_at.isoformat(),
    }


def _without_unhashable(batch: SyncBatch) -> SyncBatch:
    """`batch` with records whose fields have no canonical JSON moved to dead letters."""
    kept: list[SourceRecord] = []
    refused = list(batch.dead_letters)
    for record in batch.upserts:
        try:
            content_hash(record.fields)
        except InvalidRequest as exc:
            refused.append(
                DeadLetterDraft(
                    record.record_type,
                    record.source_record_id,
                    exc.rule,
                    record=record_document(record),
                )
            )
            continue
        kept.append(record)
    return SyncBatch(
        cursor=batch.cursor,
        changes_read=batch.changes_read,
        upserts=tuple(kept),
        deletions=batch.deletions,
        dead_letters=tuple(refused),
        remaining_estimate=batch.remaining_estimate,
        signed=batch.signed,
    )
