"""Department signatures of cached records.

Revision ID: 0008_record_signatures
Revises: 0007_record_key_lookup
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_record_signatures"
down_revision: str | Sequence[str] | None = "0007_record_key_lookup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_signatures",
        sa.Column("adapter_id", sa.String(128), nullable=False),
        sa.Column("record_type", sa.String(128), nullable=False),
        sa.Column("source_record_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "adapter_id", "record_type", "source_record_id", name=op.f("pk_record_signatures")
        ),
    )


def downgrade() -> None:
    op.drop_table("record_signatures")
