"""Tables of adapter sync jobs. Registered with `Base.metadata` via `certstore.models`.

- `sync_jobs`: one row per job, with its lease (which node runs it, until when, under
  which fencing token), its resume cursor and its progress counts. A partial unique
  index allows at most one RUNNING job per adapter, whatever the nodes do.
- `sync_seen_records`: during a FULL job, the records the source still has; at the end,
  the adapter's records not in it are withdrawn. Rows are dropped when the job ends.
- `sync_dead_letters`: changes that could not be applied, with the reason and the raw
  row, one row per source record (a later failure of the same record replaces it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from certstore.models import (
    ADAPTER_ID_LENGTH,
    ID_TYPE,
    JSON_TYPE,
    RECORD_TYPE_LENGTH,
    Base,
)

__all__ = ["DeadLetterRow", "SeenRecordRow", "SyncJobRow"]

STATE_LENGTH: Final = 16
TRIGGER_LENGTH: Final = 100
WORKER_LENGTH: Final = 200
TOKEN_LENGTH: Final = 64
_RUNNING: Final = sa.text("state = 'RUNNING'")


class SyncJobRow(Base):
    """One sync job: what it reads, who runs it, where it resumes, how far it got."""

    __tablename__ = "sync_jobs"
    __table_args__ = (
        sa.CheckConstraint("mode IN ('FULL', 'INCREMENTAL')", name="mode"),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')", name="state"
        ),
        # One job per schedule tick, however many nodes run the schedule.
        sa.UniqueConstraint("trigger", "scheduled_for"),
        sa.Index(None, "state", "id"),
        sa.Index(None, "adapter_id", "id"),
        sa.Index(
            "ix_sync_jobs_one_running_per_adapter",
            "adapter_id",
            unique=True,
            sqlite_where=_RUNNING,
            postgresql_where=_RUNNING,
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH))
    mode: Mapped[str] = mapped_column(sa.String(STATE_LENGTH))
    state: Mapped[str] = mapped_column(sa.String(STATE_LENGTH))
    trigger: Mapped[str] = mapped_column(sa.String(TRIGGER_LENGTH))
    scheduled_for: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(sa.String(WORKER_LENGTH))
    lease_token: Mapped[str | None] = mapped_column(sa.String(TOKEN_LENGTH))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean)
    # The source position right after the last committed batch (None: the start).
    cursor: Mapped[str | None] = mapped_column(sa.Text)
    records_seen: Mapped[int] = mapped_column(sa.BigInteger)
    applied: Mapped[int] = mapped_column(sa.BigInteger)
    unchanged: Mapped[int] = mapped_column(sa.BigInteger)
    dead_lettered: Mapped[int] = mapped_column(sa.BigInteger)
    withdrawn: Mapped[int] = mapped_column(sa.BigInteger)
    total_estimate: Mapped[int | None] = mapped_column(sa.BigInteger)
    records_per_second: Mapped[float] = mapped_column(sa.Float)
    # Claims of this job so far: more than one means it was resumed.
    claims: Mapped[int] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)


class SeenRecordRow(Base):
    """A record a running FULL job found at the source (the rest get withdrawn)."""

    __tablename__ = "sync_seen_records"

    # No foreign keys: a check per row would cost more than the marks themselves, and
    # the job removes its marks when it ends.
    job_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    record_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)


class DeadLetterRow(Base):
    """A change a sync job could not apply, with why, and the row the source sent."""

    __tablename__ = "sync_dead_letters"
    __table_args__ = (
        sa.CheckConstraint("state IN ('OPEN', 'REPLAYED', 'SUPERSEDED')", name="state"),
        sa.UniqueConstraint("adapter_id", "record_type", "source_record_id"),
        sa.Index(None, "adapter_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH))
    # The job that last refused it.
    job_id: Mapped[int | None] = mapped_column(
        ID_TYPE, sa.ForeignKey("sync_jobs.id", ondelete="SET NULL")
    )
    record_type: Mapped[str] = mapped_column(sa.String(RECORD_TYPE_LENGTH))
    # The record's id at the source, or the row's position when it had no usable id.
    source_record_id: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON_TYPE)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON_TYPE)
    state: Mapped[str] = mapped_column(sa.String(STATE_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]
