"""The audit log: an append-only RFC 9162 Merkle tree of every access and action.

Entry number `sequence` (1, 2, …) is leaf ``sequence - 1``; its leaf hash is
HASH(0x00 || canonical JSON of the entry with its sequence). The store keeps:

- ``audit_log``: the entries themselves;
- ``audit_tree_nodes``: the hash of every *complete* subtree, keyed by (level, index)
  (level 0 holds the leaf hashes), written once when the subtree completes and never
  changed. Any inclusion or consistency proof is made of O(log n) of them, read in one
  query;
- ``audit_tree_head``: one row with the size, root and frontier (the complete subtrees
  on the right edge), so an append costs O(log n) hashes and no extra read. Appends lock
  it (``FOR UPDATE`` on PostgreSQL; SQLite serializes writers anyway), so several hub
  nodes on one database grow one tree;
- ``audit_tree_heads``: the signed tree heads (C2SP checkpoints) the hub published.

`append_in()` works inside a transaction the caller owns, so an action and its audit
entry commit together or not at all. `AuditLog.verify()` recomputes every leaf from the
entries and the tree from the leaves, and checks them against the signed heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from certstore.database import Database
from certstore.models import ID_TYPE, JSON_TYPE, Base
from domain.errors import InvalidRequest
from domain.records import canonical_json
from signing import merkle
from signing.merkle import NodeKey, TreeHasher

VERIFY_BATCH = 5000
DEFAULT_HASH = "sha256"


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


class AuditTreeNodeRow(Base):
    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(sa.String(128))


class AuditTreeHeadRow(Base):
    __tablename__ = "audit_tree_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(ID_TYPE)
    root_hash: Mapped[str] = mapped_column(sa.String(128))
    # Hex hashes of the complete subtrees on the right edge, largest first.
    frontier: Mapped[list[str]] = mapped_column(JSON_TYPE)
    hash_name: Mapped[str] = mapped_column(sa.String(32))


class SignedTreeHeadRow(Base):
    __tablename__ = "audit_tree_heads"

    size: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(sa.String(128))
    signed_at: Mapped[datetime]
    # The C2SP tlog-checkpoint text, signature line included.
    note: Mapped[str] = mapped_column(sa.Text)


@dataclass(frozen=True)
class AuditEntry:
    """One thing that happened, as the audit log keeps it."""

    at: datetime
    caller: str
    action: str
    outcome: str
    subject_digest: str | None = None
    subject_masked: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredAuditEntry:
    """An entry with its place in the tree: leaf ``sequence - 1``."""

    sequence: int
    entry: AuditEntry
    leaf_hash: str

    @property
    def leaf_index(self) -> int:
        return self.sequence - 1


@dataclass(frozen=True)
class TreeState:
    """The tree as it stands: `size` leaves with `root` (hex), hashed with `hash_name`."""

    size: int
    root: str
    hash_name: str


@dataclass(frozen=True)
class StoredTreeHead:
    size: int
    root: str
    signed_at: datetime
    note: str


@dataclass(frozen=True)
class ChainReport:
    """What checking the log found: intact, or the first bad entry and why."""

    intact: bool
    entries_checked: int
    first_bad_sequence: int = 0
    problem: str = ""
    heads_checked: int = 0


def leaf_data(sequence: int, entry: AuditEntry) -> bytes:
    """The bytes a leaf hashes: canonical JSON of the entry and its sequence."""
    return canonical_json(
        {
            "sequence": sequence,
            "at": entry.at.isoformat(),
            "caller": entry.caller,
            "action": entry.action,
            "outcome": entry.outcome,
            "subject_digest": entry.subject_digest,
            "subject_masked": entry.subject_masked,
            "detail": dict(entry.detail),
        }
    )


# Built once: appends are on every lookup's path.
_SELECT_HEAD = (
    sa.select(AuditTreeHeadRow.size, AuditTreeHeadRow.frontier, AuditTreeHeadRow.hash_name)
    .where(AuditTreeHeadRow.id == 1)
    .with_for_update()
)
_SELECT_SIZE = sa.select(AuditTreeHeadRow.size, AuditTreeHeadRow.hash_name).where(
    AuditTreeHeadRow.id == 1
)
_INSERT_ENTRIES = sa.insert(AuditEntryRow)
_INSERT_NODES = sa.insert(AuditTreeNodeRow)
_HEAD_VALUES = {
    "size": sa.bindparam("head_size"),
    "root_hash": sa.bindparam("head_root"),
    "frontier": sa.bindparam("head_frontier", type_=JSON_TYPE),
}
_INSERT_HEAD = sa.insert(AuditTreeHeadRow).values(
    id=1, hash_name=sa.bindparam("head_hash_name"), **_HEAD_VALUES
)
_UPDATE_HEAD = sa.update(AuditTreeHeadRow).where(AuditTreeHeadRow.id == 1).values(**_HEAD_VALUES)


def append_in(
    session: Session | Connection,
    entries: Sequence[AuditEntry],
    *,
    hash_name: str = DEFAULT_HASH,
) -> list[StoredAuditEntry]:
    """Append `entries` to the tree inside the caller's transaction.

    `hash_name` chooses the hash only when the tree is created; afterwards the tree's
    own (kept in its head row) is used. Raises whatever the database raises
    (`Database.transaction` converts it to `StoreError`); the caller's action then
    rolls back with the entries.
    """
    if not entries:
        return []
    head = session.execute(_SELECT_HEAD).first()
    if head is None:
        size, frontier, name = 0, [], hash_name
    else:
        size, name = head.size, head.hash_name
        frontier = [bytes.fromhex(h) for h in head.frontier]
    hasher = merkle.tree_hasher(name)
    stored: list[StoredAuditEntry] = []
    nodes: list[dict[str, Any]] = []
    for entry in entries:
        leaf = hasher.leaf(leaf_data(size + 1, entry))
        for (level, index), digest in merkle.append_leaf(hasher, frontier, size, leaf):
            nodes.append({"level": level, "idx": index, "hash": digest.hex()})
        size += 1
        stored.append(StoredAuditEntry(size, entry, leaf.hex()))
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
            }
            for s in stored
        ],
    )
    session.execute(_INSERT_NODES, nodes)
    values = {
        "head_size": size,
        "head_root": merkle.root_of(hasher, frontier).hex(),
        "head_frontier": [h.hex() for h in frontier],
    }
    if head is None:
        session.execute(_INSERT_HEAD, {**values, "head_hash_name": name})
    else:
        session.execute(_UPDATE_HEAD, values)
    return stored


def _to_entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        at=row.at,
        caller=row.caller,
        action=row.action,
        outcome=row.outcome,
        subject_digest=row.subject_digest,
        subject_masked=row.subject_masked,
        detail=row.detail,
    )


def _nodes_sql(keys: Iterable[NodeKey]) -> sa.TextClause:
    """One primary-key lookup for a set of (level, index) keys.

    Built as text: a proof needs 20-40 keys, and building the same condition as an
    SQLAlchemy expression costs more than the query. The values are integers this module
    computed (never caller text), so writing them into the statement is safe.
    """
    terms = " OR ".join(f"(level = {int(level)} AND idx = {int(index)})" for level, index in keys)
    return sa.text(f"SELECT level, idx, hash FROM audit_tree_nodes WHERE {terms}")


class AuditLog:
    """Appends to, reads, proves and verifies the audit tree. Safe to share between threads."""

    def __init__(self, database: Database, *, hash_name: str = DEFAULT_HASH) -> None:
        """`hash_name` is the hash a new tree is made with (an existing tree keeps its own)."""
        self._database = database
        self._hash_name = hash_name

    def append(self, entries: Sequence[AuditEntry]) -> list[StoredAuditEntry]:
        """Append in a transaction of its own. Raises `StoreError`."""
        with self._database.core_transaction() as connection:
            return append_in(connection, entries, hash_name=self._hash_name)

    # --- reading ----------------------------------------------------------------------------

    def for_subject(
        self, digest: str, *, since: datetime | None = None, after: int = 0, limit: int = 50
    ) -> list[StoredAuditEntry]:
        """Entries about one subject (by digest), oldest first, after sequence `after`."""
        statement = (
            sa.select(AuditEntryRow, AuditTreeNodeRow.hash)
            .join(
                AuditTreeNodeRow,
                sa.and_(
                    AuditTreeNodeRow.level == 0,
                    AuditTreeNodeRow.idx == AuditEntryRow.sequence - 1,
                ),
                isouter=True,
            )
            .where(AuditEntryRow.subject_digest == digest, AuditEntryRow.sequence > after)
            .order_by(AuditEntryRow.sequence)
            .limit(limit)
        )
        if since is not None:
            statement = statement.where(AuditEntryRow.at >= since)
        with self._database.transaction(readonly=True) as session:
            return [
                StoredAuditEntry(row.sequence, _to_entry(row), leaf or "")
                for row, leaf in session.execute(statement)
            ]

    def state(self) -> TreeState:
        """The tree's size, root and hash now (the empty tree when nothing was appended)."""
        with self._database.transaction(readonly=True) as session:
            row = session.get(AuditTreeHeadRow, 1)
            if row is None:
                hasher = merkle.tree_hasher(self._hash_name)
                return TreeState(0, hasher.empty_root().hex(), hasher.name)
            return TreeState(row.size, row.root_hash, row.hash_name)

    def head(self) -> tuple[int, str]:
        """The newest size and root hash (hex)."""
        state = self.state()
        return state.size, state.root

    def hasher(self) -> TreeHasher:
        return merkle.tree_hasher(self.state().hash_name)

    def entries(self, *, after: int = 0) -> Iterator[StoredAuditEntry]:
        """Every entry after sequence `after`, oldest first, read in batches, with the leaf
        hash the tree holds for its position ("" when none). Raises `StoreError`."""
        while True:
            with self._database.transaction(readonly=True) as session:
                rows = list(
                    session.scalars(
                        sa.select(AuditEntryRow)
                        .where(AuditEntryRow.sequence > after)
                        .order_by(AuditEntryRow.sequence)
                        .limit(VERIFY_BATCH)
                    )
                )
                if not rows:
                    return
                leaves = dict(
                    session.execute(
                        sa.select(AuditTreeNodeRow.idx, AuditTreeNodeRow.hash).where(
                            AuditTreeNodeRow.level == 0,
                            AuditTreeNodeRow.idx.between(
                                rows[0].sequence - 1, rows[-1].sequence - 1
                            ),
                        )
                    ).all()
                )
                batch = [
                    StoredAuditEntry(r.sequence, _to_entry(r), leaves.get(r.sequence - 1, ""))
                    for r in rows
                ]
            yield from batch
            after = batch[-1].sequence

    # --- proofs -----------------------------------------------------------------------------

    def _nodes(self, keys: set[NodeKey]) -> dict[NodeKey, bytes]:
        if not keys:
            return {}
        with self._database.transaction(readonly=True) as session:
            rows = session.execute(_nodes_sql(keys))
            return {(level, index): bytes.fromhex(digest) for level, index, digest in rows}

    def _proof(self, ranges: list[tuple[int, int]], size: int) -> list[bytes]:
        """The MTHs of `ranges` in the tree of `size`: one transaction, two queries."""
        keys = merkle.nodes_needed(ranges)
        with self._database.transaction(readonly=True) as session:
            head = session.execute(_SELECT_SIZE).first()
            current, name = (head.size, head.hash_name) if head else (0, self._hash_name)
            if size > current:
                raise InvalidRequest("tree_size", f"the log holds only {current} entries")
            rows = session.execute(_nodes_sql(keys)) if keys else ()
            nodes = {(level, index): bytes.fromhex(digest) for level, index, digest in rows}
        return merkle.hashes_of(merkle.tree_hasher(name), ranges, nodes)

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        """PATH(leaf_index, D[0:tree_size]): O(log n) hashes, from one query.

        Raises `InvalidRequest` (index or size out of range), `MalformedDocument` (a
        node the proof needs is gone: the tree was tampered with), `StoreError`.
        """
        return self._proof(merkle.inclusion_ranges(leaf_index, tree_size), tree_size)

    def leaf_hash(self, leaf_index: int) -> bytes:
        """The stored hash of one leaf. Raises `InvalidRequest` when there is none."""
        found = self._nodes({(0, leaf_index)}).get((0, leaf_index))
        if found is None:
            raise InvalidRequest("leaf_index", "no such leaf in the audit log")
        return found

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]), raising as `inclusion_proof` does."""
        return self._proof(merkle.consistency_ranges(first, second), second)

    def root_at(self, size: int) -> bytes:
        """MTH(D[0:size]) from the stored complete subtrees (one query)."""
        hasher = self.hasher()
        keys = merkle.frontier_keys(size)
        nodes = self._nodes(set(keys))
        return merkle.hashes_of(hasher, [(0, size)], nodes)[0] if size else hasher.empty_root()

    # --- signed tree heads ------------------------------------------------------------------

    def add_tree_head(self, size: int, root: str, signed_at: datetime, note: str) -> None:
        """Store a signed tree head (a second one for the same size is ignored)."""
        with self._database.transaction() as session:
            if session.get(SignedTreeHeadRow, size) is None:
                session.add(
                    SignedTreeHeadRow(size=size, root_hash=root, signed_at=signed_at, note=note)
                )

    def tree_heads(self) -> list[StoredTreeHead]:
        """Every signed tree head, smallest first."""
        with self._database.transaction(readonly=True) as session:
            return [
                StoredTreeHead(r.size, r.root_hash, r.signed_at, r.note)
                for r in session.scalars(
                    sa.select(SignedTreeHeadRow).order_by(SignedTreeHeadRow.size)
                )
            ]

    def latest_tree_head(self) -> StoredTreeHead | None:
        with self._database.transaction(readonly=True) as session:
            row = session.scalars(
                sa.select(SignedTreeHeadRow).order_by(SignedTreeHeadRow.size.desc()).limit(1)
            ).first()
            return (
                None
                if row is None
                else StoredTreeHead(row.size, row.root_hash, row.signed_at, row.note)
            )

    # --- verification -----------------------------------------------------------------------

    def verify(self, heads: Mapping[int, str] | None = None) -> ChainReport:
        """Recompute every leaf from its entry and the tree from the leaves.

        Reports the first entry that is missing, edited or out of place, a stored tree
        that differs from the entries, and a log shorter than its head row or than any
        of `heads` (size → root hex, signed heads the caller verified). Raises `StoreError`.
        """
        heads = dict(heads or {})
        state = self.state()
        hasher = merkle.tree_hasher(state.hash_name)
        frontier: list[bytes] = []
        checked, expected, pending = 0, 1, sorted(heads)
        for stored in self.entries():
            checked += 1
            if stored.sequence != expected:
                return ChainReport(
                    False, checked, expected,
                    f"entry {expected} is missing (deleted); next is {stored.sequence}",
                )  # fmt: skip
            leaf = hasher.leaf(leaf_data(stored.sequence, stored.entry))
            if leaf.hex() != stored.leaf_hash:
                problem = (
                    f"entry {stored.sequence} has no leaf in the tree"
                    if not stored.leaf_hash
                    else f"entry {stored.sequence} was edited (or moved): its content no "
                    "longer hashes to its leaf"
                )
                return ChainReport(False, checked, stored.sequence, problem)
            merkle.append_leaf(hasher, frontier, stored.sequence - 1, leaf)
            while pending and pending[0] == stored.sequence:
                size = pending.pop(0)
                if merkle.root_of(hasher, frontier).hex() != heads[size]:
                    return ChainReport(
                        False, checked, stored.sequence,
                        f"the first {size} entries differ from the signed tree head of size "
                        f"{size} (the log was rewritten)",
                        len(heads) - len(pending) - 1,
                    )  # fmt: skip
            expected += 1
        size = expected - 1
        if pending:
            return ChainReport(
                False, checked, size + 1,
                f"the log holds {size} entries but a signed tree head has {pending[-1]}: "
                "the newest entries were deleted (the log was shortened)",
                len(heads) - len(pending),
            )  # fmt: skip
        if state.size != size:
            return ChainReport(
                False, checked, min(size, state.size) + 1,
                f"the log holds {size} entries but its tree head records {state.size}"
                + (": the newest entries were deleted" if state.size > size else ""),
                len(heads),
            )  # fmt: skip
        if size and merkle.root_of(hasher, frontier).hex() != state.root:
            return ChainReport(
                False, checked, size, "the stored tree root differs from the entries", len(heads)
            )
        return ChainReport(True, checked, heads_checked=len(heads))
