"""Department signatures replaced in a sync batch's transaction: a signed upsert stores
its signature, an unsigned upsert or a deletion drops the stored one (SQLite and
PostgreSQL)."""

from __future__ import annotations

from certstore.database import Database
from certstore.record_signatures import RecordSignatures, replace_in
from domain.records import SourceRecord
from domain.subjects import KeyKind, parse_key

RESIDENT = "population.resident"
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")


def record(record_id: str, signature: str | None) -> SourceRecord:
    return SourceRecord(RESIDENT, record_id, WANG, {"name": "王伟"}, signature=signature)


def test_a_batch_replaces_signatures_and_drops_stale_ones(database: Database) -> None:
    signatures = RecordSignatures(database)
    other = ("psb.other", RESIDENT, "R1")
    signatures.keep({other: "o.t.h"})
    with database.transaction() as session:
        replace_in(session, "psb.x", [record("R1", "a.b.c"), record("R2", "d.e.f")], [])
    wanted = [("psb.x", RESIDENT, r) for r in ("R1", "R2", "R3")]
    assert signatures.find(wanted) == {wanted[0]: "a.b.c", wanted[1]: "d.e.f"}
    with database.transaction() as session:
        # R1 changed without a signature, R2 deleted at the source, R3 newly signed.
        replace_in(
            session, "psb.x", [record("R1", None), record("R3", "g.h.i")], [(RESIDENT, "R2")]
        )
    assert signatures.find(wanted) == {wanted[2]: "g.h.i"}
    assert signatures.find([other]) == {other: "o.t.h"}  # another adapter's stays
