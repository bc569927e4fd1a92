"""The GM suite: SM2 signing keys, one active key per issuer and algorithm, dual-signed
certificates.

- `signing_keys.alg` widens to 16 characters and admits `SM3withSM2`;
- an issuer may hold one active key per algorithm (a dual-signed type signs with two);
- `certificates.second_kid` / `second_token`: the second signature of a dual-signed
  certificate over the same payload (NULL for single-signed ones, so existing rows
  stay as they are).

Record content hashes and sealed fields already name their algorithm in each row
(``sha256:…``, ``{"$sealed": "A256GCM"}``), so switching to SM3 / SM4-GCM rewrites nothing.

Revision ID: 0009_gm_suite
Revises: 0008_record_signatures
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_gm_suite"
down_revision: str | Sequence[str] | None = "0008_record_signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.drop_index("ix_signing_keys_one_active_per_owner", table_name="signing_keys")
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_constraint(op.f("ck_signing_keys_alg"), type_="check")
        batch.alter_column("alg", existing_type=sa.String(8), type_=sa.String(16))
        batch.create_check_constraint(
            op.f("ck_signing_keys_alg"), "alg IN ('EdDSA', 'ES256', 'SM3withSM2')"
        )
    op.create_index(
        "ix_signing_keys_one_active_per_owner_alg",
        "signing_keys",
        ["owner", "alg"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("second_kid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("second_token", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_certificates_second_kid_signing_keys"),
            "signing_keys",
            ["second_kid"],
            ["kid"],
        )


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_constraint(op.f("fk_certificates_second_kid_signing_keys"), type_="foreignkey")
        batch.drop_column("second_token")
        batch.drop_column("second_kid")
    op.drop_index("ix_signing_keys_one_active_per_owner_alg", table_name="signing_keys")
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_constraint(op.f("ck_signing_keys_alg"), type_="check")
        batch.alter_column("alg", existing_type=sa.String(16), type_=sa.String(8))
        batch.create_check_constraint(op.f("ck_signing_keys_alg"), "alg IN ('EdDSA', 'ES256')")
    op.create_index(
        "ix_signing_keys_one_active_per_owner",
        "signing_keys",
        ["owner"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
