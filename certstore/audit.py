"""The audit trail: an append-only, hash-chained log of every access and action.

Each entry carries the hash of the one before it (`prev_hash`) and its own hash over
its position and content, so editing, deleting or reordering rows breaks the chain at
a place `AuditLog.verify()` reports. A one-row head table records the last sequence and
hash: appends lock it (``FOR UPDATE`` on PostgreSQL; SQLite serializes writers anyway),
so several hub nodes on one database extend one chain, and deleting the newest entries
is detected too. Signed checkpoints (hash of an entry, signed by the hub's key) let an
auditor detect a chain that was rewritten and re-hashed wholesale.

`append_in()` works inside a transaction the caller owns, so an action and its audit
entry commit together or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from certstore.database import Database
from certstore.models import ID_TYPE, JSON_TYPE, Base
from domain.records import canonical_json

GENESIS = "0" * 64
VERIFY_BATCH = 5000


class AuditEntryRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (sa.Index(None, "subject_digest", "sequence"),)

    sequence: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    caller: Mapped[str] = mapped_column(sa.Text)
    action: Mapped[str] = mapped_column(sa.String(64))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    subject_digest: Mapped[str | None] = mapped_column(sa.String(64))
    subject_masked: Mapped[str | None] = mapped_column(sa.Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON_TYPE)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    entry_hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHeadRow(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(ID_TYPE)
    entry_hash: Mapped[str] = mapped_column(sa.String(64))


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    sequence: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    entry_hash: Mapped[str] = mapped_column(sa.String(64))
    signed_at: Mapped[datetime]
    # A JWS (compact) over {"sequence", "entry_hash", "signed_at"} by the hub's key.
    signature: Mapped[str] = mapped_column(sa.Text)


@dataclass(frozen=True)
class AuditEntry:
    """One thing that happened, as the audit trail keeps it."""

    at: datetime
    caller: str
    action: str
    outcome: str
    subject_digest: str | None = None
    subject_masked: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredAuditEntry:
    sequence: int
    entry: AuditEntry
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class ChainReport:
    """What walking the chain found: intact, or the first bad entry and why."""

    intact: bool
    entries_checked: int
    first_bad_sequence: int = 0
    problem: str = ""


# Built once: appends are on every lookup's path.
_SELECT_HEAD = (
    sa.select(AuditHeadRow.sequence, AuditHeadRow.entry_hash)
    .where(AuditHeadRow.id == 1)
    .with_for_update()
)
_INSERT_ENTRIES = sa.insert(AuditEntryRow)
_INSERT_HEAD = sa.insert(AuditHeadRow).values(
    id=1, sequence=sa.bindparam("head_sequence"), entry_hash=sa.bindparam("head_hash")
)
_UPDATE_HEAD = (
    sa.update(AuditHeadRow)
    .where(AuditHeadRow.id == 1)
    .values(sequence=sa.bindparam("head_sequence"), entry_hash=sa.bindparam("head_hash"))
)


def entry_hash(sequence: int, prev_hash: str, entry: AuditEntry) -> str:
    """SHA-256 over the previous hash and the canonical JSON of this entry."""
    content = {
        "sequence": sequence,
        "at": entry.at.isoformat(),
        "caller": entry.caller,
        "action": entry.action,
        "outcome": entry.outcome,
        "subject_digest": entry.subject_digest,
        "subject_masked": entry.subject_masked,
        "detail": dict(entry.detail),
    }
    return hashlib.sha256(prev_hash.encode() + canonical_json(content)).hexdigest()


def append_in(
    session: Session | Connection, entries: Sequence[AuditEntry]
) -> list[StoredAuditEntry]:
    """Append `entries` to the chain inside the caller's transaction.

    Raises whatever the database raises (`Database.transaction` converts it to
    `StoreError`); the caller's action then rolls back with the entries.
    """
    head = session.execute(_SELECT_HEAD).first()
    sequence, previous = (head.sequence, head.entry_hash) if head else (0, GENESIS)
    stored: list[StoredAuditEntry] = []
    for entry in entries:
        sequence += 1
        digest = entry_hash(sequence, previous, entry)
        stored.append(StoredAuditEntry(sequence, entry, previous, digest))
        previous = digest
    if not stored:
        return stored
    session.execute(
        _INSERT_ENTRIES,
        [
            {
                "sequence": s.sequence,
                "at": s.entry.at,
                "caller": s.entry.caller,
                "action": s.entry.action,
                "outcome": s.entry.outcome,
                "subject_digest": s.entry.subject_digest,
                "subject_masked": s.entry.subject_masked,
                "detail": dict(s.entry.detail),
                "prev_hash": s.prev_hash,
                "entry_hash": s.entry_hash,
            }
            for s in stored
        ],
    )
    head_values = {"head_sequence": sequence, "head_hash": previous}
    session.execute(_INSERT_HEAD if head is None else _UPDATE_HEAD, head_values)
    return stored


def _to_entry(row: AuditEntryRow) -> StoredAuditEntry:
    return StoredAuditEntry(
        row.sequence,
        AuditEntry(
            at=row.at,
            caller=row.caller,
            action=row.action,
            outcome=row.outcome,
            subject_digest=row.subject_digest,
            subject_masked=row.subject_masked,
            detail=row.detail,
        ),
        row.prev_hash,
        row.entry_hash,
    )


class AuditLog:
    """Appends to, reads and verifies the audit chain. Safe to share between threads."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def append(self, entries: Sequence[AuditEntry]) -> list[StoredAuditEntry]:
        """Append in a transaction of its own. Raises `StoreError`."""
        with self._database.core_transaction() as connection:
            return append_in(connection, entries)

    def for_subject(
        self, digest: str, *, since: datetime | None = None, after: int = 0, limit: int = 50
    ) -> list[StoredAuditEntry]:
        """Entries about one subject (by digest), oldest first, after sequence `after`."""
        statement = (
            sa.select(AuditEntryRow)
            .where(AuditEntryRow.subject_digest == digest, AuditEntryRow.sequence > after)
            .order_by(AuditEntryRow.sequence)
            .limit(limit)
        )
        if since is not None:
            statement = statement.where(AuditEntryRow.at >= since)
        with self._database.transaction(readonly=True) as session:
            return [_to_entry(row) for row in session.scalars(statement)]

    def head(self) -> tuple[int, str]:
        """The newest sequence and hash (0 and the genesis hash when empty)."""
        with self._database.transaction(readonly=True) as session:
            row = session.get(AuditHeadRow, 1)
            return (row.sequence, row.entry_hash) if row else (0, GENESIS)

    def add_checkpoint(
        self, sequence: int, digest: str, signed_at: datetime, signature: str
    ) -> None:
        with self._database.transaction() as session:
            session.merge(
                AuditCheckpointRow(
                    sequence=sequence, entry_hash=digest, signed_at=signed_at, signature=signature
                )
            )

    def checkpoints(self) -> list[tuple[int, str, str]]:
        """(sequence, entry hash, signature) of every checkpoint, oldest first."""
        with self._database.transaction(readonly=True) as session:
            rows = session.execute(
                sa.select(
                    AuditCheckpointRow.sequence,
                    AuditCheckpointRow.entry_hash,
                    AuditCheckpointRow.signature,
                ).order_by(AuditCheckpointRow.sequence)
            )
            return [(s, h, sig) for s, h, sig in rows]

    def entries(self) -> Iterator[StoredAuditEntry]:
        """Every entry, oldest first, read in batches. Raises `StoreError`."""
        after = 0
        while True:
            with self._database.transaction(readonly=True) as session:
                rows = [
                    _to_entry(row)
                    for row in session.scalars(
                        sa.select(AuditEntryRow)
                        .where(AuditEntryRow.sequence > after)
                        .order_by(AuditEntryRow.sequence)
                        .limit(VERIFY_BATCH)
                    )
                ]
            if not rows:
                return
            yield from rows
            after = rows[-1].sequence

    def verify(self, checkpoints: Mapping[int, str] | None = None) -> ChainReport:
        """Walk the chain; report the first entry whose content, order or presence broke.

        `checkpoints` maps sequences to hashes whose signatures the caller has verified;
        an entry whose hash differs from its checkpoint was rewritten with the chain.
        Raises `StoreError`.
        """
        checkpoints = checkpoints or {}
        expected_sequence, expected_prev, checked = 1, GENESIS, 0
        for stored in self.entries():
            checked += 1
            if stored.sequence != expected_sequence:
                return ChainReport(
                    False, checked, expected_sequence,
                    f"entry {expected_sequence} is missing (deleted); next is {stored.sequence}",
                )  # fmt: skip
            if stored.prev_hash != expected_prev:
                return ChainReport(
                    False, checked, stored.sequence,
                    f"entry {stored.sequence} does not follow entry {stored.sequence - 1} "
                    "(reordered, or its predecessor was changed)",
                )  # fmt: skip
            if entry_hash(stored.sequence, stored.prev_hash, stored.entry) != stored.entry_hash:
                return ChainReport(
                    False, checked, stored.sequence, f"entry {stored.sequence} was edited"
                )
            if checkpoints.get(stored.sequence, stored.entry_hash) != stored.entry_hash:
                return ChainReport(
                    False, checked, stored.sequence,
                    f"entry {stored.sequence} differs from its signed checkpoint "
                    "(the chain was rewritten)",
                )  # fmt: skip
            expected_sequence, expected_prev = stored.sequence + 1, stored.entry_hash
        head_sequence, head_hash = self.head()
        if (head_sequence, head_hash) != (expected_sequence - 1, expected_prev):
            return ChainReport(
                False, checked, expected_sequence,
                f"the chain ends at entry {expected_sequence - 1} but its head records "
                f"entry {head_sequence}: the newest entries were deleted",
            )  # fmt: skip
        return ChainReport(True, checked)
