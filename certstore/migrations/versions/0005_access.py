"""Access applications and grants for the sharing catalogue, and their change counter.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the portable types in certstore.models.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "access_applications",
        sa.Column("application_id", sa.String(40), nullable=False),
        sa.Column("applicant", sa.String(200), nullable=False),
        sa.Column("owner_uscc", sa.String(18), nullable=False),
        sa.Column("requested_fields", JSON, nullable=False),
        sa.Column("purposes", JSON, nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("requested_days", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_at", TIMESTAMP, nullable=False),
        sa.Column("decide_by", TIMESTAMP, nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("granted_fields", JSON, nullable=True),
        sa.Column("grant_expires_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("ended_by", sa.String(200), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "state IN ('PENDING', 'APPROVED', 'REJECTED', 'WITHDRAWN', 'EXPIRED', 'REVOKED')",
            name=op.f("ck_access_applications_state"),
        ),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_access_applications")),
    )
    op.create_index(
        op.f("ix_access_applications_applicant_state"),
        "access_applications",
        ["applicant", "state"],
    )
    op.create_index(
        op.f("ix_access_applications_owner_uscc_state"),
        "access_applications",
        ["owner_uscc", "state"],
    )
    op.create_index(
        op.f("ix_access_applications_state_decide_by"),
        "access_applications",
        ["state", "decide_by"],
    )
    op.create_table(
        "access_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_version")),
    )


def downgrade() -> None:
    op.drop_table("access_version")
    op.drop_index(op.f("ix_access_applications_state_decide_by"), table_name="access_applications")
    op.drop_index(op.f("ix_access_applications_owner_uscc_state"), table_name="access_applications")
    op.drop_index(op.f("ix_access_applications_applicant_state"), table_name="access_applications")
    op.drop_table("access_applications")
