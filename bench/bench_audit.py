"""Evidence benchmarks: what receipts and the Merkle audit log cost a Lookup, and proof
generation from a store of 1,000,000 audit entries.

The Lookup comparison runs one hub and alternates rounds between today's path (Merkle
tree appends and a signed receipt on every answer) and the path before them: the
hash-chained audit log (one hash, one row and a head update per entry, as revision 0004
kept it; re-created here on its own tables) and no receipt. The median round ratio counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from bench.bench_exchange import PURPOSE, SUBJECT, OneRecord, _hub, _spec, _throughput
from bench.harness import Ratio
from certstore.audit import AuditEntry, AuditLog, AuditTreeHeadRow, AuditTreeNodeRow
from certstore.database import Database
from certstore.migrate import upgrade
from domain.records import canonical_json
from exchange.generated import exchange_pb2, exchange_pb2_grpc
from exchange.logs import configure_logging
from signing import merkle

ROUNDS = 5
TREE_SIZE = 1_000_000
PROOFS = 300

# --- the previous path: a hash chain (revision 0004's shape) -------------------------------

_legacy = sa.MetaData()
_chain = sa.Table(
    "bench_chain_log",
    _legacy,
    sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Text),
    sa.Column("caller", sa.Text),
    sa.Column("action", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("subject_digest", sa.Text),
    sa.Column("subject_masked", sa.Text),
    sa.Column("detail", sa.JSON),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("entry_hash", sa.String(64)),
)
_chain_head = sa.Table(
    "bench_chain_head",
    _legacy,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sequence", sa.Integer),
    sa.Column("entry_hash", sa.String(64)),
)


class _Chained:
    sequence: int
    leaf_index: int
    leaf_hash: str

    def __init__(self, sequence: int, entry: AuditEntry, digest: str) -> None:
        self.sequence, self.entry, self.leaf_index, self.leaf_hash = (
            sequence,
            entry,
            sequence - 1,
            digest,
        )


class ChainLog:
    """The audit log as it was before the Merkle tree: a hash chain and a head row."""

    def __init__(self, database: Database, merkle_log: AuditLog) -> None:
        self._database = database
        # Everything but appends (the hub's periodic tree-head signing) goes to the tree.
        self._merkle_log = merkle_log
        _legacy.create_all(database.engine)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._merkle_log, name)

    def append(self, entries: Sequence[AuditEntry]) -> list[_Chained]:
        with self._database.core_transaction() as connection:
            head = connection.execute(
                sa.select(_chain_head.c.sequence, _chain_head.c.entry_hash).where(
                    _chain_head.c.id == 1
                )
            ).first()
            sequence, previous = (head.sequence, head.entry_hash) if head else (0, "0" * 64)
            stored, rows = [], []
            for entry in entries:
                sequence += 1
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
                digest = hashlib.sha256(previous.encode() + canonical_json(content)).hexdigest()
                rows.append(
                    {**content, "detail": dict(entry.detail), "prev_hash": previous,
                     "entry_hash": digest}
                )  # fmt: skip
                stored.append(_Chained(sequence, entry, digest))
                previous = digest
            connection.execute(_chain.insert(), rows)
            if head is None:
                connection.execute(
                    _chain_head.insert(), {"id": 1, "sequence": sequence, "entry_hash": previous}
                )
            else:
                connection.execute(
                    _chain_head.update().where(_chain_head.c.id == 1),
                    {"sequence": sequence, "entry_hash": previous},
                )
            return stored


async def _lookup_cost(folder: Path) -> Ratio:
    server = await _hub(folder / "lookup", [OneRecord(_spec("one"))])
    hub = server.hub
    merkle_log, receipts = hub.audit.store, hub.receipts
    chain_log: Any = ChainLog(hub.database, merkle_log)
    request = exchange_pb2.LookupRequest(subject=SUBJECT, purpose=PURPOSE)
    rounds: list[tuple[float, float]] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        assert (await stub.Lookup(request)).receipt, "the new path must sign receipts"
        for _ in range(ROUNDS):
            hub.audit.store, hub.receipts = merkle_log, receipts
            new = await _throughput(lambda: stub.Lookup(request, timeout=5))
            hub.audit.store, hub.receipts = chain_log, None
            old = await _throughput(lambda: stub.Lookup(request, timeout=5))
            rounds.append((new, old))
    hub.audit.store, hub.receipts = merkle_log, receipts
    await server.stop(grace=1)
    for number, (new, old) in enumerate(rounds, start=1):
        print(
            f"round {number}: Lookup with receipts + Merkle log {new:,.0f} calls/s, "
            f"previous path (hash chain, no receipt) {old:,.0f} calls/s (ratio {new / old:.2f})"
        )
    new, old = sorted(rounds, key=lambda r: r[0] / r[1])[len(rounds) // 2]
    return Ratio(
        "audit: Lookup QPS with receipts + Merkle log vs the previous path (median round)",
        new,
        old,
        0.9,
        "calls/s",
    )


# --- proofs at a million entries -----------------------------------------------------------


def _fill(database: Database, size: int) -> None:
    """A tree of `size` leaves written straight into the node and head tables."""
    hasher = merkle.SHA256
    frontier: list[bytes] = []
    batch: list[dict[str, Any]] = []
    with database.core_transaction() as connection:
        for index in range(size):
            leaf = hasher.leaf(index.to_bytes(8, "big"))
            for (level, position), digest in merkle.append_leaf(hasher, frontier, index, leaf):
                batch.append({"level": level, "idx": position, "hash": digest.hex()})
            if len(batch) >= 50_000:
                connection.execute(sa.insert(AuditTreeNodeRow), batch)
                batch = []
        if batch:
            connection.execute(sa.insert(AuditTreeNodeRow), batch)
        connection.execute(
            sa.insert(AuditTreeHeadRow),
            {
                "id": 1,
                "size": size,
                "root_hash": merkle.root_of(hasher, frontier).hex(),
                "frontier": [h.hex() for h in frontier],
                "hash_name": "sha256",
            },
        )


def _proofs(folder: Path) -> list[Ratio]:
    url = f"sqlite:///{folder / 'million.db'}"
    upgrade(url)
    database = Database.from_url(url)
    started = time.perf_counter()
    _fill(database, TREE_SIZE)
    print(f"built a tree of {TREE_SIZE:,} leaves in {time.perf_counter() - started:.1f} s")
    log = AuditLog(database)
    size, root = log.head()
    rng = random.Random(12)
    inclusion: list[float] = []
    consistency: list[float] = []
    hasher = merkle.SHA256
    for _ in range(PROOFS):
        index = rng.randrange(size)
        started = time.perf_counter()
        proof = log.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - started)
        merkle.verify_inclusion(
            hasher, index, size, hasher.leaf(index.to_bytes(8, "big")), proof, bytes.fromhex(root)
        )
        first = rng.randrange(1, size)
        started = time.perf_counter()
        log.consistency_proof(first, size)
        consistency.append(time.perf_counter() - started)
    database.dispose()
    p50 = statistics.median(inclusion) * 1000
    c50 = statistics.median(consistency) * 1000
    print(
        f"at {size:,} entries: inclusion proof p50 {p50:.2f} ms "
        f"(p99 {sorted(inclusion)[int(PROOFS * 0.99) - 1] * 1000:.2f} ms), "
        f"consistency proof p50 {c50:.2f} ms; {len(proof)} hashes each, one query"
    )
    return [
        Ratio("audit: inclusion proof p50 at 1,000,000 entries vs 5 ms", p50, 5.0, 1.0, "ms",
              higher_is_better=False),
        Ratio("audit: consistency proof p50 at 1,000,000 entries vs 5 ms", c50, 5.0, 1.0, "ms",
              higher_is_better=False),
    ]  # fmt: skip


def main() -> list[Ratio]:
    configure_logging("ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        return [asyncio.run(_lookup_cost(folder)), *_proofs(folder)]
