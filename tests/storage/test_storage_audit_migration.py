"""Revision 0006: hash-chained audit rows become the Merkle tree's leaves, in order."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from certstore import migrate
from certstore.audit import AuditEntry, AuditLog, leaf_data
from certstore.database import Database, create_engine_for
from domain.records import canonical_json

START = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)
COUNT = 37


def _chain_content(sequence: int, at: datetime, n: int) -> dict[str, object]:
    return {
        "sequence": sequence,
        "at": at.isoformat(),
        "caller": "91350100M000100Y43/hall-approval",
        "action": "LOOKUP",
        "outcome": "OK",
        "subject_digest": f"{n:064x}",
        "subject_masked": "110105********002X",
        "detail": {"purpose": {"case_id": f"C-{n}", "reason": "企业开办"}, "n": n},
    }


def test_chained_rows_migrate_into_the_tree_in_order(database_url: str) -> None:
    migrate.upgrade(database_url, "0005")
    engine = create_engine_for(database_url)
    previous = "0" * 64
    rows = []
    for sequence in range(1, COUNT + 1):
        at = START + timedelta(minutes=sequence)
        content = _chain_content(sequence, at, 1000 - sequence)  # digests out of order on purpose
        digest = hashlib.sha256(previous.encode() + canonical_json(content)).hexdigest()
        rows.append({**content, "at": at, "prev_hash": previous, "entry_hash": digest})
        previous = digest
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO audit_log (sequence, at, caller, action, outcome, subject_digest, "
                "subject_masked, detail, prev_hash, entry_hash) VALUES (:sequence, :at, :caller, "
                ":action, :outcome, :subject_digest, :subject_masked, :detail, :prev_hash, "
                ":entry_hash)"
            ).bindparams(sa.bindparam("detail", type_=sa.JSON())),
            rows,
        )
        connection.execute(
            sa.text("INSERT INTO audit_head (id, sequence, entry_hash) VALUES (1, :s, :h)"),
            {"s": COUNT, "h": previous},
        )
    engine.dispose()

    migrate.upgrade(database_url)
    database = Database.from_url(database_url)
    try:
        log = AuditLog(database)
        report = log.verify()
        assert report.intact, report.problem
        assert report.entries_checked == COUNT
        stored = list(log.entries())
        assert [s.sequence for s in stored] == list(range(1, COUNT + 1))
        assert [s.entry.detail["n"] for s in stored] == [1000 - n for n in range(1, COUNT + 1)]
        # New entries continue the migrated tree.
        log.append([AuditEntry(at=START, caller="c", action="LOOKUP", outcome="OK")])
        assert log.verify().intact
        assert log.head()[0] == COUNT + 1
        assert (
            stored[0].leaf_hash
            == hashlib.sha256(b"\x00" + leaf_data(1, stored[0].entry)).hexdigest()
        )
    finally:
        database.dispose()

    # And back: the chain is recomputed, every row kept.
    migrate.downgrade(database_url, "0005")
    engine = create_engine_for(database_url)
    with engine.connect() as connection:
        head = connection.execute(sa.text("SELECT sequence FROM audit_head")).scalar_one()
        first = connection.execute(
            sa.text("SELECT entry_hash FROM audit_log WHERE sequence = 1")
        ).scalar_one()
    engine.dispose()
    assert head == COUNT + 1
    assert first == rows[0]["entry_hash"]
