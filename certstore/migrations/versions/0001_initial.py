"""Initial schema: records and their keys, adapter registrations, sync cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the portable types in certstore.models: a migration must not change
# when the models do.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.String(length=128), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("record_type", sa.String(length=128), nullable=False),
        sa.Column("source_record_id", sa.Text(), nullable=False),
        sa.Column("subject_kind", sa.String(length=32), nullable=False),
        sa.Column("subject_value", sa.Text(), nullable=False),
        sa.Column("related_subjects", JSON, nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("content_hash", sa.String(length=80), nullable=False),
        sa.Column("fetched_at", TIMESTAMP, nullable=False),
        sa.Column("source_updated_at", TIMESTAMP, nullable=True),
        sa.Column("withdrawn_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint(
            "adapter_id",
            "record_type",
            "source_record_id",
            name=op.f("uq_records_adapter_id_record_type_source_record_id"),
        ),
    )
    op.create_index(
        op.f("ix_records_subject_kind_subject_value_record_type"),
        "records",
        ["subject_kind", "subject_value", "record_type"],
        unique=False,
    )
    op.create_table(
        "record_keys",
        sa.Column("record_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_record_keys_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", "kind", "value", name=op.f("pk_record_keys")),
    )
    op.create_index(
        op.f("ix_record_keys_kind_value"), "record_keys", ["kind", "value"], unique=False
    )
    op.create_table(
        "adapter_registrations",
        sa.Column("adapter_id", sa.String(length=128), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("registered_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("last_success_at", TIMESTAMP, nullable=True),
        sa.Column("last_error_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_heartbeat_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "origin IN ('config', 'registered')", name=op.f("ck_adapter_registrations_origin")
        ),
        sa.PrimaryKeyConstraint("adapter_id", name=op.f("pk_adapter_registrations")),
    )
    op.create_table(
        "sync_cursors",
        sa.Column("adapter_id", sa.String(length=128), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("adapter_id", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
    op.drop_table("adapter_registrations")
    op.drop_index(op.f("ix_record_keys_kind_value"), table_name="record_keys")
    op.drop_table("record_keys")
    op.drop_index(op.f("ix_records_subject_kind_subject_value_record_type"), table_name="records")
    op.drop_table("records")
