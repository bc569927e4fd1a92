"""Access applications for conditionally shared record types, and the grants they give.

One row per application (申请): what a caller asked of one owning department, and what
became of it. An approved application is a grant until it expires or is revoked. Every
change also increments the single `access_version` row in the same transaction, so a
hub node learns that grants changed with one cheap read of that row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from certstore.database import Database
from certstore.models import JSON_TYPE, Base
from domain.errors import NotFound

__all__ = [
    "APPLICATION_STATES",
    "AccessApplication",
    "AccessApplicationRow",
    "AccessRepository",
    "AccessVersionRow",
]

PENDING: Final = "PENDING"
APPROVED: Final = "APPROVED"
REJECTED: Final = "REJECTED"
WITHDRAWN: Final = "WITHDRAWN"
EXPIRED: Final = "EXPIRED"
REVOKED: Final = "REVOKED"
APPLICATION_STATES: Final = (PENDING, APPROVED, REJECTED, WITHDRAWN, EXPIRED, REVOKED)
APPLICATION_ID_LENGTH: Final = 40
CALLER_LENGTH: Final = 200
USCC_LENGTH: Final = 18


class AccessApplicationRow(Base):
    """An application and, once approved, the grant it became."""

    __tablename__ = "access_applications"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ('PENDING', 'APPROVED', 'REJECTED', 'WITHDRAWN', 'EXPIRED', 'REVOKED')",
            name="state",
        ),
        sa.Index(None, "applicant", "state"),
        sa.Index(None, "owner_uscc", "state"),
        sa.Index(None, "state", "decide_by"),
    )

    application_id: Mapped[str] = mapped_column(sa.String(APPLICATION_ID_LENGTH), primary_key=True)
    applicant: Mapped[str] = mapped_column(sa.String(CALLER_LENGTH))
    owner_uscc: Mapped[str] = mapped_column(sa.String(USCC_LENGTH))
    # {record type: [field, ...]}; an empty list asks for every field that may be shared.
    requested_fields: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    purposes: Mapped[list[str]] = mapped_column(JSON_TYPE)
    legal_basis: Mapped[str] = mapped_column(sa.Text)
    contact: Mapped[str] = mapped_column(sa.Text)
    requested_days: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(16))
    submitted_at: Mapped[datetime]
    decide_by: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(sa.String(CALLER_LENGTH))
    decision_reason: Mapped[str] = mapped_column(sa.Text, default="")
    granted_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON_TYPE)
    grant_expires_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(sa.String(CALLER_LENGTH))
    end_reason: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[datetime]


class AccessVersionRow(Base):
    """One row whose counter moves with every change to applications and grants."""

    __tablename__ = "access_version"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(sa.BigInteger)


@dataclass(frozen=True)
class AccessApplication:
    """An application as stored: what was asked, and what became of it."""

    application_id: str
    applicant: str
    owner_uscc: str
    requested_fields: Mapping[str, tuple[str, ...]]
    purposes: tuple[str, ...]
    legal_basis: str
    contact: str
    requested_days: int
    state: str
    submitted_at: datetime
    decide_by: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str = ""
    granted_fields: Mapping[str, tuple[str, ...]] | None = None
    grant_expires_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str = ""
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def record_types(self) -> tuple[str, ...]:
        return tuple(self.requested_fields)

    def live_at(self, now: datetime) -> bool:
        """Whether this is a grant in force at `now` (approved, not yet expired)."""
        return (
            self.state == APPROVED
            and self.grant_expires_at is not None
            and now < self.grant_expires_at
        )


def _fields(value: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]] | None:
    if value is None:
        return None
    return {str(k): tuple(str(f) for f in v) for k, v in value.items()}


def _to_application(row: AccessApplicationRow) -> AccessApplication:
    return AccessApplication(
        application_id=row.application_id,
        applicant=row.applicant,
        owner_uscc=row.owner_uscc,
        requested_fields=_fields(row.requested_fields) or {},
        purposes=tuple(row.purposes),
        legal_basis=row.legal_basis,
        contact=row.contact,
        requested_days=row.requested_days,
        state=row.state,
        submitted_at=row.submitted_at,
        decide_by=row.decide_by,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason or "",
        granted_fields=_fields(row.granted_fields),
        grant_expires_at=row.grant_expires_at,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        end_reason=row.end_reason or "",
        updated_at=row.updated_at,
    )


def _bump(session: Session) -> None:
    updated = session.execute(
        sa.update(AccessVersionRow)
        .where(AccessVersionRow.id == 1)
        .values(version=AccessVersionRow.version + 1)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(AccessVersionRow(id=1, version=1))


class AccessRepository:
    """Stores applications and grants. Safe to share between threads.

    Every method raises `StoreError` when the database fails.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    def version(self) -> int:
        """The change counter: it moves whenever any application or grant changes."""
        with self._database.transaction(readonly=True) as session:
            value = session.scalar(
                sa.select(AccessVersionRow.version).where(AccessVersionRow.id == 1)
            )
            return int(value or 0)

    def add(self, application: AccessApplication) -> AccessApplication:
        """Store a new application."""
        with self._database.transaction() as session:
            session.add(
                AccessApplicationRow(
                    application_id=application.application_id,
                    applicant=application.applicant,
                    owner_uscc=application.owner_uscc,
                    requested_fields={k: list(v) for k, v in application.requested_fields.items()},
                    purposes=list(application.purposes),
                    legal_basis=application.legal_basis,
                    contact=application.contact,
                    requested_days=application.requested_days,
                    state=application.state,
                    submitted_at=application.submitted_at,
                    decide_by=application.decide_by,
                    decision_reason="",
                    end_reason="",
                    updated_at=application.submitted_at,
                )
            )
            _bump(session)
        return application

    def get(self, application_id: str) -> AccessApplication:
        """Raises `NotFound` when there is no such application."""
        with self._database.transaction(readonly=True) as session:
            row = session.get(AccessApplicationRow, application_id)
            if row is None:
                raise NotFound(f"no access application {application_id[:60]!r}")
            return _to_application(row)

    def find(
        self,
        *,
        applicant: str | None = None,
        owner_uscc: str | None = None,
        states: Collection[str] = (),
        limit: int = 200,
    ) -> list[AccessApplication]:
        """Applications, newest first, filtered by applicant, owner and states."""
        query = sa.select(AccessApplicationRow)
        if applicant is not None:
            query = query.where(AccessApplicationRow.applicant == applicant)
        if owner_uscc is not None:
            query = query.where(AccessApplicationRow.owner_uscc == owner_uscc)
        if states:
            query = query.where(AccessApplicationRow.state.in_(list(states)))
        query = query.order_by(
            AccessApplicationRow.submitted_at.desc(), AccessApplicationRow.application_id
        ).limit(limit)
        with self._database.transaction(readonly=True) as session:
            return [_to_application(row) for row in session.scalars(query)]

    def grants(self, now: datetime) -> list[AccessApplication]:
        """Approved applications whose grant has not expired at `now`."""
        query = sa.select(AccessApplicationRow).where(
            AccessApplicationRow.state == APPROVED, AccessApplicationRow.grant_expires_at > now
        )
        with self._database.transaction(readonly=True) as session:
            return [_to_application(row) for row in session.scalars(query)]

    def overdue(self, now: datetime) -> list[tuple[str, str]]:
        """(id, state) of applications that ran out by `now`: pending ones whose decision
        period ended, and approved ones whose grant expired."""
        query = sa.select(AccessApplicationRow.application_id, AccessApplicationRow.state).where(
            sa.or_(
                sa.and_(
                    AccessApplicationRow.state == PENDING, AccessApplicationRow.decide_by <= now
                ),
                sa.and_(
                    AccessApplicationRow.state == APPROVED,
                    AccessApplicationRow.grant_expires_at <= now,
                ),
            )
        )
        with self._database.transaction(readonly=True) as session:
            return [(str(i), str(s)) for i, s in session.execute(query)]

    def transition(
        self, application_id: str, from_states: Sequence[str], **changes: Any
    ) -> AccessApplication | None:
        """Apply `changes` (column values, `state` among them) when the application is in
        one of `from_states`; returns it changed, or None when its state was another.

        The state is compared in the UPDATE itself, so of several nodes making the same
        change exactly one succeeds. Raises `NotFound` when there is no such application.
        """
        with self._database.transaction() as session:
            updated = session.execute(
                sa.update(AccessApplicationRow)
                .where(
                    AccessApplicationRow.application_id == application_id,
                    AccessApplicationRow.state.in_(list(from_states)),
                )
                .values(**changes)
            )
            row = session.get(AccessApplicationRow, application_id, populate_existing=True)
            if row is None:
                raise NotFound(f"no access application {application_id[:60]!r}")
            if getattr(updated, "rowcount", 0) != 1:
                return None
            _bump(session)
            return _to_application(row)
