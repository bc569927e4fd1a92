"""Sync jobs and dead letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the portable types in certstore.models: a migration must not change
# when the models do.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
RUNNING = sa.text("state = 'RUNNING'")


def upgrade() -> None:
    op.create_table(
        "sync_jobs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=False),
        sa.Column("scheduled_for", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("records_seen", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.Column("unchanged", sa.BigInteger(), nullable=False),
        sa.Column("dead_lettered", sa.BigInteger(), nullable=False),
        sa.Column("withdrawn", sa.BigInteger(), nullable=False),
        sa.Column("total_estimate", sa.BigInteger(), nullable=True),
        sa.Column("records_per_second", sa.Float(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("mode IN ('FULL', 'INCREMENTAL')", name=op.f("ck_sync_jobs_mode")),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
            name=op.f("ck_sync_jobs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_jobs")),
        sa.UniqueConstraint(
            "trigger", "scheduled_for", name=op.f("uq_sync_jobs_trigger_scheduled_for")
        ),
    )
    op.create_index(op.f("ix_sync_jobs_state_id"), "sync_jobs", ["state", "id"], unique=False)
    op.create_index(
        op.f("ix_sync_jobs_adapter_id_id"), "sync_jobs", ["adapter_id", "id"], unique=False
    )
    op.create_index(
        "ix_sync_jobs_one_running_per_adapter",
        "sync_jobs",
        ["adapter_id"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )
    op.create_table(
        "sync_seen_records",
        sa.Column("job_id", ID, autoincrement=False, nullable=False),
        sa.Column("record_id", ID, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "record_id", name=op.f("pk_sync_seen_records")),
    )
    op.create_table(
        "sync_dead_letters",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", ID, nullable=True),
        sa.Column("record_type", sa.String(length=128), nullable=False),
        sa.Column("source_record_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", JSON, nullable=True),
        sa.Column("record", JSON, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("replayed_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "state IN ('OPEN', 'REPLAYED', 'SUPERSEDED')", name=op.f("ck_sync_dead_letters_state")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["sync_jobs.id"],
            name=op.f("fk_sync_dead_letters_job_id_sync_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_dead_letters")),
        sa.UniqueConstraint(
            "adapter_id",
            "record_type",
            "source_record_id",
            name=op.f("uq_sync_dead_letters_adapter_id_record_type_source_record_id"),
        ),
    )
    op.create_index(
        op.f("ix_sync_dead_letters_adapter_id_state_id"),
        "sync_dead_letters",
        ["adapter_id", "state", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sync_dead_letters_adapter_id_state_id"), table_name="sync_dead_letters")
    op.drop_table("sync_dead_letters")
    op.drop_table("sync_seen_records")
    op.drop_index("ix_sync_jobs_one_running_per_adapter", table_name="sync_jobs")
    op.drop_index(op.f("ix_sync_jobs_adapter_id_id"), table_name="sync_jobs")
    op.drop_index(op.f("ix_sync_jobs_state_id"), table_name="sync_jobs")
    op.drop_table("sync_jobs")
