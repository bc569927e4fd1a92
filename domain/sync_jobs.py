"""What a sync job is, as the rest of the hub sees it: frozen values, no I/O.

A job is one run of one adapter's change stream into the store, FULL (from the start,
withdrawing what disappeared at the source) or INCREMENTAL (from the adapter's stored
cursor). The store (`certstore.sync_jobs`) returns these objects; the gRPC service and
the command line translate them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from domain.records import SourceRecord

__all__ = [
    "MANUAL_TRIGGER",
    "BatchOutcome",
    "DeadLetter",
    "DeadLetterDraft",
    "DeadLetterState",
    "JobLease",
    "JobProgress",
    "JobState",
    "SyncBatch",
    "SyncJob",
    "SyncMode",
    "schedule_trigger",
]

MANUAL_TRIGGER: Final = "manual"
SCHEDULE_TRIGGER_PREFIX: Final = "schedule:"


def schedule_trigger(schedule_name: str) -> str:
    """The trigger recorded on jobs a schedule starts: ``schedule:<name>``."""
    return SCHEDULE_TRIGGER_PREFIX + schedule_name


class SyncMode(enum.StrEnum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """True for the states a job never leaves."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobProgress:
    """How far a job got. Counts cover the whole job, across resumptions."""

    records_seen: int = 0
    applied: int = 0
    # Same content as stored: nothing written.
    unchanged: int = 0
    dead_lettered: int = 0
    withdrawn: int = 0
    # Changes the whole job will read, when the source could say; None otherwise.
    total_estimate: int | None = None
    records_per_second: float = 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate, or None when the total or rate is unknown."""
        if self.total_estimate is None or self.records_per_second <= 0:
            return None
        return max(0, self.total_estimate - self.records_seen) / self.records_per_second


@dataclass(frozen=True)
class SyncJob:
    """One sync job with its state and progress."""

    job_id: int
    adapter_id: str
    mode: SyncMode
    state: JobState
    trigger: str
    created_at: datetime
    progress: JobProgress = field(default_factory=JobProgress)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""
    # The node (``<name>:<pid>``) running the job, or that ran it last.
    worker: str = ""
    # Where the job resumes: the source position right after the last committed batch.
    cursor: str | None = None
    # The schedule tick that started it (None for manual jobs).
    scheduled_for: datetime | None = None
    cancel_requested: bool = False
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class JobLease:
    """A claim on a running job: only its holder may commit the job's batches.

    `token` is new on every claim, so a node whose lease was taken over can no longer
    commit anything (its writes are fenced off by the token).
    """

    job: SyncJob
    token: str
    worker: str
    # True when the job was taken over from a node whose lease had expired.
    taken_over: bool = False


@dataclass(frozen=True)
class DeadLetterDraft:
    """A change that could not be applied, to be kept with its reason."""

    record_type: str
    # The record's id at the source, or its position when the row had no usable id.
    source_record_id: str
    reason: str
    # The source's row as it was read, when the adapter kept it.
    raw: Mapping[str, Any] | None = None
    # The record as mapped, when the row mapped but the record broke a rule.
    record: Mapping[str, Any] | None = None


class DeadLetterState(enum.StrEnum):
    OPEN = "OPEN"
    # Replayed by an operator and applied.
    REPLAYED = "REPLAYED"
    # A later sync applied the same record from the source: nothing left to do.
    SUPERSEDED = "SUPERSEDED"


@dataclass(frozen=True)
class DeadLetter:
    """A quarantined change with the reason it was refused."""

    dead_letter_id: int
    adapter_id: str
    job_id: int | None
    record_type: str
    source_record_id: str
    reason: str
    state: DeadLetterState
    created_at: datetime
    updated_at: datetime
    raw: Mapping[str, Any] | None = None
    record: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SyncBatch:
    """One batch of a change stream, sorted out and ready to commit with its cursor.

    Changes to one record within a batch are collapsed to the last one, as the source
    ordered them, so `upserts` and `deletions` never name the same record twice.
    """

    cursor: str
    # Changes read from the source for this batch (counted as records seen).
    changes_read: int
    upserts: tuple[SourceRecord, ...] = ()
    # (record type, source record id) of records deleted at the source.
    deletions: tuple[tuple[str, str], ...] = ()
    dead_letters: tuple[DeadLetterDraft, ...] = ()
    # The source's estimate of the changes left from this batch on, when it gave one.
    remaining_estimate: int | None = None
    # True when the adapter's department signs its records (it has department keys): the
    # upserts' verified signatures (`SourceRecord.signature`) replace the stored ones.
    signed: bool = False


@dataclass(frozen=True)
class BatchOutcome:
    """What committing one batch did, and the job as it now stands."""

    applied: int
    unchanged: int
    withdrawn: int
    dead_lettered: int
    job: SyncJob
