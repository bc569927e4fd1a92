"""Tables of e-certificates, signing keys and the status list. Registered via `certstore.models`.

- `certificates`: one row per certificate version, holding its signed token (never
  NULL: a certificate is never stored without its signature), the columns it is found
  by, its lifecycle status, its status-list index and the request id it was issued for.
- `signing_keys`: the hub root key and every issuer key the hub has ever trusted, with
  their lifecycle. Private keys are kept only as encrypted PKCS#8 (a CHECK refuses
  anything else) or as a reference to an external key (an HSM); never in clear.
- `certificate_state`: one row. Its lock serializes issuance (status-list indices are
  handed out under it), and its revisions tell every hub node when the status list or
  the key ring changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from certstore.models import ID_TYPE, JSON_TYPE, KEY_KIND_LENGTH, Base

__all__ = ["CertificateRow", "CertificateStateRow", "SigningKeyRow"]

CERTIFICATE_ID_LENGTH: Final = 200
TYPE_CODE_LENGTH: Final = 64
USCC_LENGTH: Final = 18
SERIAL_LENGTH: Final = 64
STATUS_LENGTH: Final = 16
REQUEST_ID_LENGTH: Final = 128
FINGERPRINT_LENGTH: Final = 64
KID_LENGTH: Final = 64
KEY_OWNER_LENGTH: Final = 32
ALG_LENGTH: Final = 16
MATERIAL_KIND_LENGTH: Final = 32

ROOT_OWNER: Final = "root"
MATERIAL_ENCRYPTED_PKCS8: Final = "pkcs8-encrypted"
_ENCRYPTED_PEM_PREFIX: Final = "-----BEGIN ENCRYPTED PRIVATE KEY-----"
_ACTIVE: Final = sa.text("status = 'active'")


class CertificateRow(Base):
    """One version of one e-certificate, as signed."""

    __tablename__ = "certificates"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('VALID', 'SUSPENDED', 'REVOKED', 'SUPERSEDED')", name="status"
        ),
        sa.CheckConstraint("version BETWEEN 1 AND 999", name="version"),
        sa.UniqueConstraint("status_list_index"),
        # Idempotency: one certificate per issuer and client request id.
        sa.UniqueConstraint("issuer_uscc", "request_id"),
        sa.UniqueConstraint("type_code", "issuer_uscc", "serial", "version"),
        # ListByHolder: newest first, keyset-paged on (issued_at, id).
        sa.Index(None, "holder_kind", "holder_value", "issued_at", "id"),
        # Building the status list reads the few certificates that are not VALID.
        sa.Index(None, "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(CERTIFICATE_ID_LENGTH), primary_key=True)
    type_code: Mapped[str] = mapped_column(sa.String(TYPE_CODE_LENGTH))
    issuer_uscc: Mapped[str] = mapped_column(sa.String(USCC_LENGTH))
    serial: Mapped[str] = mapped_column(sa.String(SERIAL_LENGTH))
    version: Mapped[int] = mapped_column(sa.Integer)
    holder_kind: Mapped[str] = mapped_column(sa.String(KEY_KIND_LENGTH))
    holder_value: Mapped[str] = mapped_column(sa.Text)
    issued_at: Mapped[datetime]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    predecessor_id: Mapped[str | None] = mapped_column(
        sa.String(CERTIFICATE_ID_LENGTH), sa.ForeignKey("certificates.id")
    )
    successor_id: Mapped[str | None] = mapped_column(sa.String(CERTIFICATE_ID_LENGTH))
    status: Mapped[str] = mapped_column(sa.String(STATUS_LENGTH))
    status_reason: Mapped[str] = mapped_column(sa.Text)
    status_changed_at: Mapped[datetime]
    status_list_index: Mapped[int] = mapped_column(ID_TYPE)
    kid: Mapped[str] = mapped_column(sa.String(KID_LENGTH), sa.ForeignKey("signing_keys.kid"))
    # The JWS compact serialization: the certificate's content and its signature.
    token: Mapped[str] = mapped_column(sa.Text)
    # A dual-signed certificate: the second issuer key and its token over the same payload.
    second_kid: Mapped[str | None] = mapped_column(
        sa.String(KID_LENGTH), sa.ForeignKey("signing_keys.kid")
    )
    second_token: Mapped[str | None] = mapped_column(sa.Text)
    request_id: Mapped[str] = mapped_column(sa.String(REQUEST_ID_LENGTH))
    # SHA-256 of the request a retry must repeat exactly.
    request_fingerprint: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LENGTH))


class SigningKeyRow(Base):
    """A signing key: the hub root key (`owner` = 'root') or an issuer's (`owner` = USCC)."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'retired', 'compromised')", name="status"),
        sa.CheckConstraint("alg IN ('EdDSA', 'ES256', 'SM3withSM2')", name="alg"),
        # Defence in depth: the database itself refuses a private key in clear.
        sa.CheckConstraint(
            f"material_kind <> '{MATERIAL_ENCRYPTED_PKCS8}' "
            f"OR private_material LIKE '{_ENCRYPTED_PEM_PREFIX}%'",
            name="encrypted_material",
        ),
        # One active key per owner and algorithm: a dual-signed type signs with two.
        sa.Index(
            "ix_signing_keys_one_active_per_owner_alg",
            "owner",
            "alg",
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        ),
    )

    kid: Mapped[str] = mapped_column(sa.String(KID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(KEY_OWNER_LENGTH))
    issuer_department: Mapped[str | None] = mapped_column(sa.Text)
    alg: Mapped[str] = mapped_column(sa.String(ALG_LENGTH))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    # 'pkcs8-encrypted': a PEM ENCRYPTED PRIVATE KEY; otherwise the key provider's
    # reference to a key it holds (an HSM object), never key material in clear.
    material_kind: Mapped[str] = mapped_column(sa.String(MATERIAL_KIND_LENGTH))
    private_material: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(STATUS_LENGTH))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime | None]
    compromised_since: Mapped[datetime | None]
    created_at: Mapped[datetime]


class CertificateStateRow(Base):
    """The one row (id 1) of hub-wide certificate state."""

    __tablename__ = "certificate_state"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    next_status_index: Mapped[int] = mapped_column(ID_TYPE)
    # Bumped whenever a status bit changes (revoke, suspend, reinstate, supersede).
    status_revision: Mapped[int] = mapped_column(ID_TYPE)
    # Bumped whenever a signing key is added or changes status.
    keys_revision: Mapped[int] = mapped_column(ID_TYPE)
    # Fixed when the row is made, so certificates and the list keep agreeing on it.
    status_list_uri: Mapped[str | None] = mapped_column(sa.Text)
