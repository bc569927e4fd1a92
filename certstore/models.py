"""The store's tables, portable across SQLite and PostgreSQL.

ORM classes here are private to `certstore`: repositories translate rows to the domain
objects of `domain.records` and back. Every schema change needs a migration in
`certstore/migrations/versions/`; a test checks that the migrated schema matches these
models on both dialects.

Portability rules: identifiers are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite
(the only type SQLite auto-increments); JSON is ``JSONB`` on PostgreSQL; timestamps are
timezone-aware and stored in UTC (`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "NAMING_CONVENTION",
    "AdapterRegistrationRow",
    "Base",
    "RecordKeyRow",
    "RecordRow",
    "SyncCursorRow",
    "UTCDateTime",
]

# Named constraints keep migrations deterministic and let SQLite batch migrations
# drop or alter them later.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADAPTER_ID_LENGTH: Final = 128
RECORD_TYPE_LENGTH: Final = 128
KEY_KIND_LENGTH: Final = 32
CONTENT_HASH_LENGTH: Final = 80
ORIGIN_LENGTH: Final = 16


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC; reads come back aware, in UTC.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones, so the value is stored
    as naive UTC and marked UTC again on the way out. Naive datetimes are refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware timestamps only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


ID_TYPE: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_TYPE: Final = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every table of the store."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class RecordRow(Base):
    """A department record as last fetched, with its provenance."""

    __tablename__ = "records"
    __table_args__ = (
        sa.UniqueConstraint("adapter_id", "record_type", "source_record_id"),
        sa.Index(None, "subject_kind", "subject_value", "record_type"),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH))
    department: Mapped[str] = mapped_column(sa.Text)
    record_type: Mapped[str] = mapped_column(sa.String(RECORD_TYPE_LENGTH))
    source_record_id: Mapped[str] = mapped_column(sa.Text)
    subject_kind: Mapped[str] = mapped_column(sa.String(KEY_KIND_LENGTH))
    subject_value: Mapped[str] = mapped_column(sa.Text)
    # The source's own related keys, ``[{"kind": ..., "value": ...}]`` in its order.
    related_subjects: Mapped[list[dict[str, str]]] = mapped_column(JSON_TYPE)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    content_hash: Mapped[str] = mapped_column(sa.String(CONTENT_HASH_LENGTH))
    fetched_at: Mapped[datetime]
    source_updated_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]


class RecordKeyRow(Base):
    """One key a record is filed under: its subject, related keys and derived keys."""

    __tablename__ = "record_keys"
    # Finding a subject's records starts here: the index alone gives the record ids.
    __table_args__ = (sa.Index(None, "kind", "value", "record_id"),)

    record_id: Mapped[int] = mapped_column(
        ID_TYPE, sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(KEY_KIND_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text, primary_key=True)


class AdapterRegistrationRow(Base):
    """An adapter known to the hub, from configuration or registered over gRPC."""

    __tablename__ = "adapter_registrations"
    __table_args__ = (sa.CheckConstraint("origin IN ('config', 'registered')", name="origin"),)

    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    origin: Mapped[str] = mapped_column(sa.String(ORIGIN_LENGTH))
    registered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_success_at: Mapped[datetime | None]
    last_error_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_heartbeat_at: Mapped[datetime | None]


class SyncCursorRow(Base):
    """Where an adapter's change feed was last read up to."""

    __tablename__ = "sync_cursors"

    adapter_id: Mapped[str] = mapped_column(sa.String(ADAPTER_ID_LENGTH), primary_key=True)
    cursor: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime]


# The tables of sync jobs, certificates and the audit trail live in their own modules;
# importing them here registers them with Base.metadata wherever the models are used.
from certstore import (  # noqa: E402, F401
    access,
    audit,
    certificate_models,
    record_signatures,
    sync_models,
)
