"""Sync jobs in the store: claims with leases, batches committed with their cursor,
withdrawal of what a FULL job did not see, and dead letters.

How nodes share jobs. A node claims a job in one transaction: it selects a claimable
job ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; on SQLite the same statement runs inside
``BEGIN IMMEDIATE``, which already excludes every other writer) and stamps it with its
name, a fresh fencing token and a lease expiry. Claimable are PENDING jobs of adapters
with no RUNNING job, and RUNNING jobs whose lease expired (their node died). A partial
unique index allows one RUNNING job per adapter, so two claims racing for two jobs of
one adapter cannot both win.

Every write a job makes afterwards (a batch, a heartbeat, the end) updates its row only
where the token is still the holder's, in the same transaction as the write: a node
whose lease was taken over commits nothing more, so two nodes never both apply a batch.

Exactly once. A batch's records, its dead letters, the adapter's cursor and the job's
cursor and counts commit together; a crash before the commit loses the whole batch and
the resumed job reads it again from the committed cursor. Upserts are idempotent and
identical records are not rewritten, so reading a batch twice changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from certstore.database import Database, insert_for
from certstore.field_cipher import FieldCipher
from certstore.models import RecordRow, SyncCursorRow
from certstore.record_signatures import replace_in
from certstore.records import (
    ChangedRecords,
    prepare_records,
    upsert_records_in,
    withdraw_records_in,
    write_changed_records_in,
)
from certstore.sync_models import DeadLetterRow, SeenRecordRow, SyncJobRow
from domain.crypto import HashAlg
from domain.errors import FailedPrecondition, InvalidRequest, NotFound
from domain.records import SourceRecord
from domain.subjects import mask_identifiers
from domain.sync_jobs import (
    BatchOutcome,
    DeadLetter,
    DeadLetterDraft,
    DeadLetterState,
    JobLease,
    JobProgress,
    JobState,
    SyncBatch,
    SyncJob,
    SyncMode,
)

__all__ = ["AdapterBusy", "LeaseLost", "SyncJobRepository"]

MAX_ERROR_LENGTH: Final = 2000
_SEEN_CHUNK: Final = 1000
_ANALYZE_FIRST: Final = 5000


class LeaseLost(FailedPrecondition):
    """The node no longer holds the job: another node took it over, or it ended."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"sync job {job_id} is no longer held by this node")
        self.job_id = job_id


class AdapterBusy(FailedPrecondition):
    """The adapter has a RUNNING job already: one job per adapter runs at a time."""

    def __init__(self, adapter_id: str, running: SyncJob | None) -> None:
        where = (
            f"job {running.job_id} on {running.worker or 'another node'}"
            if running is not None
            else "another job"
        )
        super().__init__(f"adapter {adapter_id} is being synced by {where}")
        self.adapter_id = adapter_id
        self.running = running


class _ClaimRace(Exception):
    """Another node set a job of the same adapter RUNNING in the meantime."""


@dataclass(frozen=True)
class _Fence:
    job_id: int
    token: str


class SyncJobRepository:
    """Sync jobs, their leases, batches and dead letters. Safe to share by threads."""

    def __init__(
        self,
        database: Database,
        cipher: FieldCipher | None = None,
        hash_alg: HashAlg = HashAlg.SHA256,
    ) -> None:
        """`cipher`, when given, seals the fields of every record written (at rest);
        `hash_alg` makes their content hashes (SM3 under the GM suite)."""
        self._database = database
        self._cipher = cipher
        self._hash_alg = hash_alg

    # --- creating and reading jobs ----------------------------------------------------------

    def create(
        self,
        adapter_id: str,
        mode: SyncMode,
        trigger: str,
        now: datetime,
        *,
        scheduled_for: datetime | None = None,
    ) -> SyncJob | None:
        """Add a PENDING job; any node with the adapter may claim it.

        With `scheduled_for` (a schedule tick) the job is created once per trigger and
        tick however many nodes ask, and not at all while the trigger still has a
        PENDING job (ticks coalesce instead of piling up): None is returned then.

        Raises:
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            if scheduled_for is not None:
                waiting = session.scalar(
                    sa.select(SyncJobRow.id)
                    .where(SyncJobRow.trigger == trigger, SyncJobRow.state == JobState.PENDING)
                    .limit(1)
                )
                if waiting is not None:
                    return None
            insert = insert_for(session, SyncJobRow).values(
                _new_job_values(adapter_id, mode, trigger, now, scheduled_for)
            )
            if scheduled_for is not None:
                insert = insert.on_conflict_do_nothing(index_elements=["trigger", "scheduled_for"])
            row = session.scalars(
                insert.returning(SyncJobRow), execution_options={"populate_existing": True}
            ).first()
            return None if row is None else _to_job(row)

    def create_running(
        self,
        adapter_id: str,
        mode: SyncMode,
        trigger: str,
        worker: str,
        lease_seconds: float,
        now: datetime,
    ) -> JobLease:
        """Add a job already claimed by `worker` (a foreground ``tongban sync run``).

        Raises:
            AdapterBusy: the adapter has a RUNNING job.
            StoreError: the database failed or is unreachable.
        """
        token = _new_token()
        try:
            with self._database.transaction() as session:
                values = _new_job_values(adapter_id, mode, trigger, now, None)
                values.update(
                    state=JobState.RUNNING.value,
                    started_at=now,
                    worker=worker,
                    lease_token=token,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    heartbeat_at=now,
                    claims=1,
                    cursor=None if mode is SyncMode.FULL else _adapter_cursor(session, adapter_id),
                )
                try:
                    row = session.scalars(
                        sa.insert(SyncJobRow).values(values).returning(SyncJobRow)
                    ).one()
                except IntegrityError as exc:
                    raise _ClaimRace from exc
                return JobLease(_to_job(row), token, worker)
        except _ClaimRace:
            raise AdapterBusy(adapter_id, self.running_job(adapter_id)) from None

    def get(self, job_id: int) -> SyncJob:
        """The job with id `job_id`.

        Raises:
            NotFound: no job has this id.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction(readonly=True) as session:
            row = session.get(SyncJobRow, job_id)
            if row is None:
                raise NotFound(f"no sync job {job_id}")
            return _to_job(row)

    def running_job(self, adapter_id: str) -> SyncJob | None:
        """The adapter's RUNNING job, if any (its lease may have expired).

        Raises:
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction(readonly=True) as session:
            row = session.scalars(
                sa.select(SyncJobRow).where(
                    SyncJobRow.adapter_id == adapter_id, SyncJobRow.state == JobState.RUNNING
                )
            ).first()
            return None if row is None else _to_job(row)

    def list_jobs(
        self,
        *,
        adapter_id: str | None = None,
        states: Collection[JobState] = (),
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[SyncJob]:
        """Jobs newest first, filtered by adapter and states when given.

        `before_id` continues a listing after the last job of the previous page.
        Raises `StoreError` when the database failed or is unreachable.
        """
        statement = sa.select(SyncJobRow).order_by(SyncJobRow.id.desc()).limit(limit)
        if adapter_id is not None:
            statement = statement.where(SyncJobRow.adapter_id == adapter_id)
        if states:
            statement = statement.where(SyncJobRow.state.in_([state.value for state in states]))
        if before_id is not None:
            statement = statement.where(SyncJobRow.id < before_id)
        with self._database.transaction(readonly=True) as session:
            return [_to_job(row) for row in session.scalars(statement)]

    def adapter_cursor(self, adapter_id: str) -> str | None:
        """Where the adapter's change stream was last committed up to (None: never).

        Raises `StoreError` when the database failed or is unreachable.
        """
        with self._database.transaction(readonly=True) as session:
            return _adapter_cursor(session, adapter_id)

    # --- cancelling ---------------------------------------------------------------------------

    def request_cancel(self, job_id: int, now: datetime) -> SyncJob:
        """Cancel a job: a PENDING one (or one whose node died) at once, a RUNNING one
        at its next batch boundary, by the node running it.

        Raises:
            NotFound: no job has this id.
            FailedPrecondition: the job has ended already.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            row = session.scalars(
                sa.select(SyncJobRow).where(SyncJobRow.id == job_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no sync job {job_id}")
            state = JobState(row.state)
            if state.finished:
                raise FailedPrecondition(f"sync job {job_id} has ended already ({state.value})")
            lease_expired = row.lease_expires_at is None or row.lease_expires_at <= now
            if state is JobState.PENDING or lease_expired:
                _end(session, row, JobState.CANCELLED, now, "cancelled before it ran on")
            else:
                row.cancel_requested = True
            session.flush()
            return _to_job(row)

    # --- claiming and holding ---------------------------------------------------------------

    def claim(
        self, worker: str, adapter_ids: Collection[str], lease_seconds: float, now: datetime
    ) -> JobLease | None:
        """Claim the oldest claimable job of one of `adapter_ids` for `worker`.

        Claimable: PENDING with no RUNNING job of its adapter, or RUNNING with an expired
        lease (taken over: it resumes from its cursor). None when there is none, or when
        another node won a race for the same adapter (try again later).

        Raises:
            StoreError: the database failed or is unreachable.
        """
        if not adapter_ids:
            return None
        running = aliased(SyncJobRow)
        adapter_busy = sa.exists().where(
            running.adapter_id == SyncJobRow.adapter_id, running.state == JobState.RUNNING
        )
        claimable = sa.or_(
            sa.and_(SyncJobRow.state == JobState.PENDING, ~adapter_busy),
            sa.and_(SyncJobRow.state == JobState.RUNNING, SyncJobRow.lease_expires_at < now),
        )
        statement = (
            sa.select(SyncJobRow)
            .where(claimable, SyncJobRow.adapter_id.in_(sorted(adapter_ids)))
            .order_by(SyncJobRow.id)
            .limit(1)
            # Nodes skip rows another node is claiming instead of queueing behind it;
            # SQLite renders no FOR UPDATE and serializes writers with BEGIN IMMEDIATE.
            .with_for_update(skip_locked=True)
        )
        # A read first: an idle node's poll must not take SQLite's write lock.
        with self._database.transaction(readonly=True) as session:
            probe = sa.select(SyncJobRow.id).where(
                claimable, SyncJobRow.adapter_id.in_(sorted(adapter_ids))
            )
            if session.scalar(probe.limit(1)) is None:
                return None
        try:
            with self._database.transaction() as session:
                row = session.scalars(statement).first()
                if row is None:
                    return None
                return self._take(session, row, worker, lease_seconds, now)
        except _ClaimRace:
            return None

    def take_over(
        self, job_id: int, worker: str, lease_seconds: float, now: datetime, *, force: bool
    ) -> JobLease:
        """Claim the RUNNING job `job_id` for `worker`, to resume it from its cursor.

        Without `force` the job's lease must have expired; with it (the caller knows the
        holder is dead, such as a killed process on this host) it need not have.

        Raises:
            NotFound: no job has this id.
            FailedPrecondition: the job is not RUNNING, or its lease is live and not `force`.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            row = session.scalars(
                sa.select(SyncJobRow).where(SyncJobRow.id == job_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no sync job {job_id}")
            if row.state != JobState.RUNNING:
                raise FailedPrecondition(f"sync job {job_id} is {row.state}, not RUNNING")
            expired = row.lease_expires_at is None or row.lease_expires_at < now
            if not (expired or force):
                raise FailedPrecondition(
                    f"sync job {job_id} is held by {row.worker} until "
                    f"{_shown_time(row.lease_expires_at)}"
                )
            return self._take(session, row, worker, lease_seconds, now)

    def _take(
        self, session: Session, row: SyncJobRow, worker: str, lease_seconds: float, now: datetime
    ) -> JobLease:
        taken_over = row.state == JobState.RUNNING
        if row.started_at is None:
            row.started_at = now
            row.cursor = (
                None if row.mode == SyncMode.FULL else _adapter_cursor(session, row.adapter_id)
            )
        token = _new_token()
        row.state = JobState.RUNNING.value
        row.worker = worker
        row.lease_token = token
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        row.heartbeat_at = now
        row.claims += 1
        try:
            session.flush()
        except IntegrityError as exc:  # the one-RUNNING-job-per-adapter index
            raise _ClaimRace from exc
        return JobLease(_to_job(row), token, worker, taken_over)

    def renew(self, lease: JobLease, lease_seconds: float, now: datetime) -> SyncJob:
        """Heartbeat: extend the lease; returns the job (with `cancel_requested`).

        Raises:
            LeaseLost: the node no longer holds the job.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            return _to_job(
                _fenced_update(
                    session,
                    lease,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    heartbeat_at=now,
                )
            )

    def release(self, lease: JobLease, now: datetime) -> SyncJob:
        """Give a job back (the node is shutting down): it is PENDING again and any
        node resumes it from its cursor.

        Raises:
            LeaseLost: the node no longer holds the job.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            return _to_job(
                _fenced_update(
                    session,
                    lease,
                    state=JobState.PENDING.value,
                    lease_token=None,
                    lease_expires_at=None,
                    heartbeat_at=now,
                    records_per_second=0.0,
                )
            )

    # --- batches and the end ----------------------------------------------------------------

    def commit_batch(
        self,
        lease: JobLease,
        batch: SyncBatch,
        *,
        department: str,
        records_per_second: float,
        lease_seconds: float,
        now: datetime,
        supersede_dead_letters: bool,
    ) -> BatchOutcome:
        """Apply one batch and advance the adapter's and the job's cursor, atomically.

        New and changed records are written, identical ones counted unchanged,
        deletions withdraw, dead letters are kept (replacing an earlier one of the same
        record). In a FULL job every record seen is marked for `finish`. With
        `supersede_dead_letters`, open dead letters of records applied now are closed.

        Raises:
            LeaseLost: the node no longer holds the job; nothing was written.
            InvalidRequest: a record's fields are not representable as canonical JSON.
            StoreError: the database failed or is unreachable; nothing was written.
        """
        prepared = prepare_records(
            lease.job.adapter_id, department, batch.upserts, now, self._hash_alg
        )
        with self._database.transaction() as session:
            adapter_id = lease.job.adapter_id
            written = write_changed_records_in(session, adapter_id, prepared, cipher=self._cipher)
            withdrawn = withdraw_records_in(session, adapter_id, batch.deletions, now)
            if batch.signed:
                replace_in(session, adapter_id, batch.upserts, batch.deletions)
            if lease.job.mode is SyncMode.FULL:
                _mark_seen(session, lease.job.job_id, _needing_marks(lease.job, written, now))
            _keep_dead_letters(session, lease.job, batch.dead_letters, now)
            if supersede_dead_letters:
                _supersede_dead_letters(
                    session,
                    adapter_id,
                    [*written.record_ids, *batch.deletions],
                    now,
                )
            _set_adapter_cursor(session, adapter_id, batch.cursor, now)
            counts: dict[str, Any] = {
                "records_seen": SyncJobRow.records_seen + batch.changes_read,
                "applied": SyncJobRow.applied + len(written.applied),
                "unchanged": SyncJobRow.unchanged + written.unchanged,
                "withdrawn": SyncJobRow.withdrawn + withdrawn,
                "dead_lettered": SyncJobRow.dead_lettered + len(batch.dead_letters),
            }
            if batch.remaining_estimate is not None:
                counts["total_estimate"] = SyncJobRow.records_seen + batch.remaining_estimate
            row = _fenced_update(
                session,
                lease,
                cursor=batch.cursor,
                records_per_second=records_per_second,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                **counts,
            )
            _refresh_statistics_if_grown(session, row.applied - len(written.applied), row.applied)
            return BatchOutcome(
                applied=len(written.applied),
                unchanged=written.unchanged,
                withdrawn=withdrawn,
                dead_lettered=len(batch.dead_letters),
                job=_to_job(row),
            )

    def finish(self, lease: JobLease, state: JobState, now: datetime, error: str = "") -> SyncJob:
        """End the job in `state` (SUCCEEDED, FAILED or CANCELLED), keeping its progress.

        A FULL job that SUCCEEDED withdraws, at `now`, the adapter's records it did not
        see at the source (records written after it started, by lookups, are spared).
        `error` is kept with identifiers masked.

        Raises:
            ValueError: `state` is not an end state.
            LeaseLost: the node no longer holds the job; nothing was changed.
            StoreError: the database failed or is unreachable.
        """
        if not state.finished:
            raise ValueError(f"{state} is not an end state")
        job = lease.job
        with self._database.transaction() as session:
            withdrawn = 0
            if job.mode is SyncMode.FULL and state is JobState.SUCCEEDED:
                withdrawn = _withdraw_unseen(session, job, now)
            row = _fenced_update(
                session,
                lease,
                state=state.value,
                finished_at=now,
                lease_token=None,
                lease_expires_at=None,
                heartbeat_at=now,
                withdrawn=SyncJobRow.withdrawn + withdrawn,
                error=_error_text(error) or None,
                records_per_second=0.0,
            )
            session.execute(sa.delete(SeenRecordRow).where(SeenRecordRow.job_id == job.job_id))
            return _to_job(row)

    # --- dead letters -------------------------------------------------------------------------

    def open_dead_letter_count(self, adapter_id: str) -> int:
        """How many OPEN dead letters `adapter_id` has.

        Raises `StoreError` when the database failed or is unreachable.
        """
        with self._database.transaction(readonly=True) as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(DeadLetterRow)
                    .where(
                        DeadLetterRow.adapter_id == adapter_id,
                        DeadLetterRow.state == DeadLetterState.OPEN,
                    )
                )
                or 0
            )

    def dead_letters(
        self,
        adapter_id: str,
        *,
        states: Collection[DeadLetterState] = (DeadLetterState.OPEN,),
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[DeadLetter]:
        """`adapter_id`'s dead letters in the order they were first kept.

        Raises `StoreError` when the database failed or is unreachable.
        """
        statement = (
            sa.select(DeadLetterRow)
            .where(DeadLetterRow.adapter_id == adapter_id)
            .order_by(DeadLetterRow.id)
            .limit(limit)
        )
        if states:
            statement = statement.where(DeadLetterRow.state.in_([s.value for s in states]))
        if after_id is not None:
            statement = statement.where(DeadLetterRow.id > after_id)
        with self._database.transaction(readonly=True) as session:
            return [_to_dead_letter(row) for row in session.scalars(statement)]

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """The dead letter with id `dead_letter_id`.

        Raises:
            NotFound: there is none.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction(readonly=True) as session:
            row = session.get(DeadLetterRow, dead_letter_id)
            if row is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            return _to_dead_letter(row)

    def replay(
        self,
        dead_letter_id: int,
        record: SourceRecord,
        *,
        department: str,
        now: datetime,
        raw: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """Store `record` (the dead letter's row, fixed) and mark the dead letter REPLAYED.

        `raw`, when given, replaces the kept raw row (the operator's fixed version).
        The adapter's cursor is not touched.

        Raises:
            NotFound: there is no such dead letter.
            FailedPrecondition: it is not OPEN (replayed or superseded already).
            InvalidRequest: `record` is another record than the dead letter's, or its
                fields are not representable as canonical JSON.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            row = session.scalars(
                sa.select(DeadLetterRow).where(DeadLetterRow.id == dead_letter_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            if row.state != DeadLetterState.OPEN:
                raise FailedPrecondition(
                    f"dead letter {dead_letter_id} is {row.state}; only OPEN ones are replayed"
                )
            if record.record_type != row.record_type:
                raise InvalidRequest(
                    "record_type",
                    f"the fixed row is a {record.record_type}, the dead letter a {row.record_type}",
                )
            upsert_records_in(
                session, row.adapter_id, department, [record], now, cipher=self._cipher
            )
            row.state = DeadLetterState.REPLAYED.value
            row.replayed_at = now
            row.updated_at = now
            if raw is not None:
                row.raw = dict(raw)
            session.flush()
            return _to_dead_letter(row)

    def note_replay_failure(self, dead_letter_id: int, reason: str, now: datetime) -> DeadLetter:
        """Record why a replay failed; the dead letter stays OPEN with the new reason.

        Raises:
            NotFound: there is no such dead letter.
            StoreError: the database failed or is unreachable.
        """
        with self._database.transaction() as session:
            row = session.get(DeadLetterRow, dead_letter_id)
            if row is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            row.reason = _error_text(reason)
            row.updated_at = now
            session.flush()
            return _to_dead_letter(row)


# --- inside units of work -------------------------------------------------------------------


def _fenced_update(session: Session, lease: JobLease, **values: Any) -> SyncJobRow:
    """Update the job's row where the lease token is still `lease`'s; else LeaseLost."""
    row = session.scalars(
        sa.update(SyncJobRow)
        .where(SyncJobRow.id == lease.job.job_id, SyncJobRow.lease_token == lease.token)
        .values(**values)
        .returning(SyncJobRow),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).first()
    if row is None:
        raise LeaseLost(lease.job.job_id)
    return row


def _refresh_statistics_if_grown(session: Session, before: int, after: int) -> None:
    """On PostgreSQL, ANALYZE the record tables when a job's writes crossed a threshold.

    A job filling an empty store outgrows the planner's statistics long before
    autovacuum catches up, and stale statistics make the batch lookups scan the table.
    Thresholds grow fourfold (5,000, 20,000, 80,000, ...), so a load of n records
    analyzes about log4(n) times.
    """
    if session.get_bind().dialect.name != "postgresql" or after <= before:
        return
    threshold = _ANALYZE_FIRST
    while threshold <= after:
        if threshold > before:
            session.execute(sa.text("ANALYZE records"))
            session.execute(sa.text("ANALYZE record_keys"))
            return
        threshold *= 4


def _adapter_cursor(session: Session, adapter_id: str) -> str | None:
    return session.scalar(
        sa.select(SyncCursorRow.cursor).where(SyncCursorRow.adapter_id == adapter_id)
    )


def _set_adapter_cursor(session: Session, adapter_id: str, cursor: str, now: datetime) -> None:
    insert = insert_for(session, SyncCursorRow).values(
        adapter_id=adapter_id, cursor=cursor, updated_at=now
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["adapter_id"],
            set_={"cursor": insert.excluded.cursor, "updated_at": insert.excluded.updated_at},
        )
    )


def _needing_marks(job: SyncJob, written: ChangedRecords, now: datetime) -> list[int]:
    """Ids of the records seen in a batch that `finish` could otherwise withdraw.

    `finish` only judges records fetched before the job started; records this batch
    wrote carry its time, so only the unchanged ones need a mark, unless this node's
    clock is behind the one that started the job.
    """
    if job.started_at is None or now < job.started_at:
        return list(written.record_ids.values())
    applied = set(written.applied)
    return [
        record_id for identity, record_id in written.record_ids.items() if identity not in applied
    ]


def _mark_seen(session: Session, job_id: int, record_ids: Collection[int]) -> None:
    if not record_ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One statement with the ids as an array, instead of a row of parameters each.
        ids = sa.bindparam("record_ids", list(record_ids), type_=postgresql.ARRAY(sa.BigInteger))
        marks = sa.select(sa.literal(job_id, sa.BigInteger), sa.func.unnest(ids))
        session.execute(
            postgresql.insert(SeenRecordRow)
            .from_select(["job_id", "record_id"], marks)
            .on_conflict_do_nothing()
        )
        return
    # SQLite: one driver executemany of the compiled statement (no per-row SQLAlchemy
    # parameter handling; the values are plain integers).
    connection = session.connection()
    compiled = (
        insert_for(session, SeenRecordRow)
        .on_conflict_do_nothing()
        .compile(dialect=connection.dialect, column_keys=["job_id", "record_id"])
    )
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(compiled.string, [(job_id, record_id) for record_id in record_ids])
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance("marking seen records", None, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def _withdraw_unseen(session: Session, job: SyncJob, now: datetime) -> int:
    seen = sa.exists().where(
        SeenRecordRow.job_id == job.job_id, SeenRecordRow.record_id == RecordRow.id
    )
    conditions = [
        RecordRow.adapter_id == job.adapter_id,
        RecordRow.withdrawn_at.is_(None),
        ~seen,
    ]
    if job.started_at is not None:
        # Records written after the job started (by lookups) were not judged by it.
        conditions.append(RecordRow.fetched_at < job.started_at)
    result = session.execute(
        sa.update(RecordRow).where(*conditions).values(withdrawn_at=now),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _keep_dead_letters(
    session: Session, job: SyncJob, drafts: Sequence[DeadLetterDraft], now: datetime
) -> None:
    if not drafts:
        return
    latest: dict[tuple[str, str], DeadLetterDraft] = {}
    for draft in drafts:
        latest[(draft.record_type, draft.source_record_id)] = draft
    rows = [
        {
            "adapter_id": job.adapter_id,
            "job_id": job.job_id,
            "record_type": draft.record_type,
            "source_record_id": draft.source_record_id,
            "reason": _error_text(draft.reason),
            "raw": None if draft.raw is None else _storable(dict(draft.raw)),
            "record": None if draft.record is None else _storable(dict(draft.record)),
            "state": DeadLetterState.OPEN.value,
            "created_at": now,
            "updated_at": now,
            "replayed_at": None,
        }
        for _, draft in sorted(latest.items())
    ]
    insert = insert_for(session, DeadLetterRow).values(rows)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["adapter_id", "record_type", "source_record_id"],
            set_={
                name: insert.excluded[name]
                for name in ("job_id", "reason", "raw", "record", "state", "updated_at")
            }
            | {"replayed_at": None},
        )
    )


def _supersede_dead_letters(
    session: Session, adapter_id: str, identities: Sequence[tuple[str, str]], now: datetime
) -> None:
    grouped: dict[str, list[str]] = {}
    for record_type, source_record_id in identities:
        grouped.setdefault(record_type, []).append(source_record_id)
    for record_type, source_ids in grouped.items():
        for start in range(0, len(source_ids), _SEEN_CHUNK):
            session.execute(
                sa.update(DeadLetterRow)
                .where(
                    DeadLetterRow.adapter_id == adapter_id,
                    DeadLetterRow.state == DeadLetterState.OPEN,
                    DeadLetterRow.record_type == record_type,
                    DeadLetterRow.source_record_id.in_(source_ids[start : start + _SEEN_CHUNK]),
                )
                .values(state=DeadLetterState.SUPERSEDED.value, updated_at=now),
                execution_options={"synchronize_session": False},
            )


def _end(session: Session, row: SyncJobRow, state: JobState, now: datetime, error: str) -> None:
    row.state = state.value
    row.finished_at = now
    row.lease_token = None
    row.lease_expires_at = None
    row.records_per_second = 0.0
    row.error = error or None
    session.execute(sa.delete(SeenRecordRow).where(SeenRecordRow.job_id == row.id))


# --- translation ----------------------------------------------------------------------------


def _new_job_values(
    adapter_id: str,
    mode: SyncMode,
    trigger: str,
    now: datetime,
    scheduled_for: datetime | None,
) -> dict[str, Any]:
    return {
        "adapter_id": adapter_id,
        "mode": mode.value,
        "state": JobState.PENDING.value,
        "trigger": trigger,
        "scheduled_for": scheduled_for,
        "created_at": now,
        "cancel_requested": False,
        "records_seen": 0,
        "applied": 0,
        "unchanged": 0,
        "dead_lettered": 0,
        "withdrawn": 0,
        "records_per_second": 0.0,
        "claims": 0,
    }


def _to_job(row: SyncJobRow) -> SyncJob:
    return SyncJob(
        job_id=row.id,
        adapter_id=row.adapter_id,
        mode=SyncMode(row.mode),
        state=JobState(row.state),
        trigger=row.trigger,
        created_at=row.created_at,
        progress=JobProgress(
            records_seen=row.records_seen,
            applied=row.applied,
            unchanged=row.unchanged,
            dead_lettered=row.dead_lettered,
            withdrawn=row.withdrawn,
            total_estimate=row.total_estimate,
            records_per_second=float(row.records_per_second),
        ),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error or "",
        worker=row.worker or "",
        cursor=row.cursor,
        scheduled_for=row.scheduled_for,
        cancel_requested=row.cancel_requested,
        lease_expires_at=row.lease_expires_at,
    )


def _to_dead_letter(row: DeadLetterRow) -> DeadLetter:
    return DeadLetter(
        dead_letter_id=row.id,
        adapter_id=row.adapter_id,
        job_id=row.job_id,
        record_type=row.record_type,
        source_record_id=row.source_record_id,
        reason=row.reason,
        state=DeadLetterState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        raw=row.raw,
        record=row.record,
    )


def _new_token() -> str:
    return secrets.token_hex(16)


def _storable(value: Any) -> Any:
    """`value` with every string made encodable (a lone surrogate becomes ``\\ud800``).

    A dead letter keeps exactly the rows the store could not take; some of those hold
    text no database encoding can.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def _error_text(text: str) -> str:
    # Errors and reasons are shown to operators and callers: never an identifier.
    masked = mask_identifiers(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return masked if len(masked) <= MAX_ERROR_LENGTH else masked[: MAX_ERROR_LENGTH - 3] + "..."


def _shown_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")
