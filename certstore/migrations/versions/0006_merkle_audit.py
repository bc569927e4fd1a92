"""The audit trail becomes an RFC 9162 Merkle tree; hash-chained rows keep their order.

Every existing entry becomes the leaf at its position (sequence − 1); the complete
subtrees, the tree head and its frontier are computed here from the entries. The chain
columns and the chain checkpoints go: the tree and its signed tree heads replace them
(sign a first tree head after upgrading, e.g. by starting the hub).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from domain.records import canonical_json

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the portable types in certstore.models.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
BATCH = 5000

_log = sa.table(
    "audit_log",
    sa.column("sequence", ID),
    sa.column("at", TIMESTAMP),
    sa.column("caller", sa.Text()),
    sa.column("action", sa.String(64)),
    sa.column("outcome", sa.String(32)),
    sa.column("subject_digest", sa.String(64)),
    sa.column("subject_masked", sa.Text()),
    sa.column("detail", JSON),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _content(row: Any) -> bytes:
    """The entry as both the chain and the tree hash it (frozen copy of leaf_data)."""
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail)
    return canonical_json(
        {
            "sequence": row.sequence,
            "at": _utc(row.at).isoformat(),
            "caller": row.caller,
            "action": row.action,
            "outcome": row.outcome,
            "subject_digest": row.subject_digest,
            "subject_masked": row.subject_masked,
            "detail": detail,
        }
    )


def _rows(connection: sa.Connection) -> Any:
    after = 0
    while True:
        rows = connection.execute(
            sa.select(_log).where(_log.c.sequence > after).order_by(_log.c.sequence).limit(BATCH)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].sequence


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def upgrade() -> None:
    nodes = op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", ID, autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_nodes")),
    )
    head = op.create_table(
        "audit_tree_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", ID, nullable=False),
        sa.Column("root_hash", sa.String(128), nullable=False),
        sa.Column("frontier", JSON, nullable=False),
        sa.Column("hash_name", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_tree_head")),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("size", ID, autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(128), nullable=False),
        sa.Column("signed_at", TIMESTAMP, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_tree_heads")),
    )
    connection = op.get_bind()
    frontier: list[bytes] = []
    size = 0
    batch: list[dict[str, Any]] = []
    for row in _rows(connection):
        current = hashlib.sha256(b"\x00" + _content(row)).digest()
        batch.append({"level": 0, "idx": size, "hash": current.hex()})
        level, index = 0, size
        while index & 1:  # RFC 9162: each completed subtree is stored once
            current = _node(frontier.pop(), current)
            level, index = level + 1, index >> 1
            batch.append({"level": level, "idx": index, "hash": current.hex()})
        frontier.append(current)
        size += 1
        if len(batch) >= BATCH:
            connection.execute(nodes.insert(), batch)
            batch = []
    if batch:
        connection.execute(nodes.insert(), batch)
    if size:
        root = frontier[-1]
        for left in reversed(frontier[:-1]):
            root = _node(left, root)
        connection.execute(
            head.insert(),
            {
                "id": 1,
                "size": size,
                "root_hash": root.hex(),
                "frontier": [h.hex() for h in frontier],
                "hash_name": "sha256",
            },
        )
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("entry_hash")


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sa.String(64), nullable=True))
    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sequence", ID, nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("sequence", ID, autoincrement=False, nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", TIMESTAMP, nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_audit_checkpoints")),
    )
    connection = op.get_bind()
    chained = sa.table(
        "audit_log",
        sa.column("sequence", ID),
        sa.column("prev_hash", sa.String(64)),
        sa.column("entry_hash", sa.String(64)),
    )
    previous, sequence = "0" * 64, 0
    for row in list(_rows(connection)):
        digest = hashlib.sha256(previous.encode() + _content(row)).hexdigest()
        connection.execute(
            chained.update()
            .where(chained.c.sequence == row.sequence)
            .values(prev_hash=previous, entry_hash=digest)
        )
        previous, sequence = digest, row.sequence
    if sequence:
        connection.execute(
            audit_head.insert(), {"id": 1, "sequence": sequence, "entry_hash": previous}
        )
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch_op.alter_column("entry_hash", existing_type=sa.String(64), nullable=False)
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_tree_head")
    op.drop_table("audit_tree_nodes")
