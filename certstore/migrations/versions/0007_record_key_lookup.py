"""Finding a subject's records starts from record_keys: a covering (kind, value, record_id) index.

The old ``(kind, value)`` index held no record id, so each hit cost a table read, and
SQLite's planner, without statistics, preferred to start from the records' unique
``(adapter_id, record_type, source_record_id)`` index and scan an adapter's rows instead.
With the record id in the index, a lookup reads the subject's keys from the index alone
and each record by primary key, whatever the size of the store.

Revision ID: 0007_record_key_lookup
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_record_key_lookup"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_record_keys_kind_value_record_id"),
        "record_keys",
        ["kind", "value", "record_id"],
        unique=False,
    )
    op.drop_index(op.f("ix_record_keys_kind_value"), table_name="record_keys")


def downgrade() -> None:
    op.create_index(
        op.f("ix_record_keys_kind_value"), "record_keys", ["kind", "value"], unique=False
    )
    op.drop_index(op.f("ix_record_keys_kind_value_record_id"), table_name="record_keys")
