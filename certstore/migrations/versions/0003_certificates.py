"""E-certificates, signing keys and the status-list state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the portable types in certstore.models: a migration must not change
# when the models do.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("issuer_department", sa.Text(), nullable=True),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("public_jwk", JSON, nullable=False),
        sa.Column("material_kind", sa.String(32), nullable=False),
        sa.Column("private_material", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("not_before", TIMESTAMP, nullable=False),
        sa.Column("not_after", TIMESTAMP, nullable=True),
        sa.Column("compromised_since", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'retired', 'compromised')", name=op.f("ck_signing_keys_status")
        ),
        sa.CheckConstraint("alg IN ('EdDSA', 'ES256')", name=op.f("ck_signing_keys_alg")),
        sa.CheckConstraint(
            "material_kind <> 'pkcs8-encrypted' "
            "OR private_material LIKE '-----BEGIN ENCRYPTED PRIVATE KEY-----%'",
            name=op.f("ck_signing_keys_encrypted_material"),
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_index(
        "ix_signing_keys_one_active_per_owner",
        "signing_keys",
        ["owner"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("type_code", sa.String(64), nullable=False),
        sa.Column("issuer_uscc", sa.String(18), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("holder_kind", sa.String(32), nullable=False),
        sa.Column("holder_value", sa.Text(), nullable=False),
        sa.Column("issued_at", TIMESTAMP, nullable=False),
        sa.Column("valid_from", TIMESTAMP, nullable=False),
        sa.Column("valid_until", TIMESTAMP, nullable=True),
        sa.Column("predecessor_id", sa.String(200), nullable=True),
        sa.Column("successor_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("status_changed_at", TIMESTAMP, nullable=False),
        sa.Column("status_list_index", ID, nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.CheckConstraint(
            "status IN ('VALID', 'SUSPENDED', 'REVOKED', 'SUPERSEDED')",
            name=op.f("ck_certificates_status"),
        ),
        sa.CheckConstraint("version BETWEEN 1 AND 999", name=op.f("ck_certificates_version")),
        sa.ForeignKeyConstraint(
            ["kid"], ["signing_keys.kid"], name=op.f("fk_certificates_kid_signing_keys")
        ),
        sa.ForeignKeyConstraint(
            ["predecessor_id"],
            ["certificates.id"],
            name=op.f("fk_certificates_predecessor_id_certificates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sa.UniqueConstraint("status_list_index", name=op.f("uq_certificates_status_list_index")),
        sa.UniqueConstraint(
            "issuer_uscc", "request_id", name=op.f("uq_certificates_issuer_uscc_request_id")
        ),
        sa.UniqueConstraint(
            "type_code",
            "issuer_uscc",
            "serial",
            "version",
            name=op.f("uq_certificates_type_code_issuer_uscc_serial_version"),
        ),
    )
    op.create_index(
        op.f("ix_certificates_holder_kind_holder_value_issued_at_id"),
        "certificates",
        ["holder_kind", "holder_value", "issued_at", "id"],
    )
    op.create_index(op.f("ix_certificates_status"), "certificates", ["status"])
    op.create_table(
        "certificate_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_status_index", ID, nullable=False),
        sa.Column("status_revision", ID, nullable=False),
        sa.Column("keys_revision", ID, nullable=False),
        sa.Column("status_list_uri", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_state")),
    )


def downgrade() -> None:
    op.drop_table("certificate_state")
    op.drop_index(op.f("ix_certificates_status"), table_name="certificates")
    op.drop_index(
        op.f("ix_certificates_holder_kind_holder_value_issued_at_id"), table_name="certificates"
    )
    op.drop_table("certificates")
    op.drop_index("ix_signing_keys_one_active_per_owner", table_name="signing_keys")
    op.drop_table("signing_keys")
