"""The sync jobs' bulk record writes on every backend, small batches and large ones.

`write_changed_records_in` writes a small batch row by row (executemany) and a large
one in bulk: on PostgreSQL by COPY into a session-private staging table and one
INSERT … SELECT. Both must store exactly the same rows, return every record's id,
and leave nothing behind for the next write in the same session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from certstore.database import Database
from certstore.field_cipher import FieldCipher
from certstore.models import RecordKeyRow, RecordRow
from certstore.records import (
    ChangedRecords,
    RecordRepository,
    prepare_records,
    write_changed_records_in,
)
from domain.records import SourceRecord, StoredRecord
from domain.subjects import KeyKind, SubjectKey, parse_key

COMPANY = parse_key(KeyKind.USCC, "91320100MA1FL8XQ1A")
COMPANY_ORG_CODE = SubjectKey(KeyKind.ORG_CODE, "MA1FL8XQ-1")
PERSON = parse_key(KeyKind.ID_CARD, "11010519491231002X")
OTHER_PERSON = parse_key(KeyKind.ID_CARD, "110105198001010016")
T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
SMALL, LARGE = 5, 150  # below and above the bulk path's threshold (64 rows)
# Text a COPY stream must escape: tab, newline, backslash, its NULL marker, quotes.
AWKWARD = 'tab\there\nnew line \\ back\\slash \\N "quoted" 南京市玄武区'


def deed(number: int, *, subject: SubjectKey = PERSON, note: str = "") -> SourceRecord:
    return SourceRecord(
        record_type="real_estate_right",
        source_record_id=f"RE-{number:05d}",
        subject=subject,
        fields={"address": f"{AWKWARD} {number}号", "area_m2": 89.5 + number, "note": note},
        related_subjects=(COMPANY,) if number % 2 else (),
        updated_at=T0 - timedelta(days=number) if number % 3 else None,
    )


def write(database: Database, records: Sequence[SourceRecord], at: datetime) -> ChangedRecords:
    prepared = prepare_records("land", "自然资源局", records, at)
    with database.transaction() as session:
        return write_changed_records_in(session, "land", prepared)


def stored_ids(database: Database) -> dict[tuple[str, str], int]:
    with database.transaction(readonly=True) as session:
        rows = session.execute(
            sa.select(RecordRow.record_type, RecordRow.source_record_id, RecordRow.id)
        )
        return {(record_type, source_id): record_id for record_type, source_id, record_id in rows}


def by_id(records: list[StoredRecord]) -> dict[str, StoredRecord]:
    return {record.source_record_id: record for record in records}


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_a_batch_is_stored_whole_and_every_record_gets_its_id(
    database: Database, count: int
) -> None:
    records = [deed(n) for n in range(count)]

    written = write(database, records, T0)

    assert written.record_ids == stored_ids(database)
    assert sorted(written.applied) == sorted(written.record_ids)
    assert written.unchanged == 0
    repository = RecordRepository(database)
    found = by_id(repository.find(PERSON))
    assert len(found) == count
    for record in records:
        stored = found[record.source_record_id]
        assert stored.fields == record.fields
        assert stored.related_subjects == record.related_subjects
        assert stored.fetched_at == T0
        assert stored.department == "自然资源局"
    # Related keys and the keys derived from them (a USCC's organization code) are filed.
    with_company = {r.source_record_id for r in records if r.related_subjects}
    assert {r.source_record_id for r in repository.find(COMPANY_ORG_CODE)} == with_company


def test_small_and_large_batches_store_the_same_rows(database: Database) -> None:
    records = [deed(n) for n in range(LARGE)]
    # The same records for two adapters: one batch for "bulk", batches of 5 for "rows".
    with database.transaction() as session:
        write_changed_records_in(
            session, "bulk", prepare_records("bulk", "自然资源局", records, T0)
        )
    for start in range(0, LARGE, SMALL):
        chunk = records[start : start + SMALL]
        with database.transaction() as session:
            write_changed_records_in(
                session, "rows", prepare_records("rows", "自然资源局", chunk, T0)
            )

    stored = {
        adapter_id: {
            source_id: (tuple(rest), keys)
            for source_id, rest, keys in rows_of(database, adapter_id)
        }
        for adapter_id in ("bulk", "rows")
    }
    assert len(stored["bulk"]) == LARGE
    assert stored["bulk"] == stored["rows"]
    columns, keys = stored["bulk"]["RE-00001"]
    assert columns[4] == records[1].fields  # the fields column, text escapes and all
    assert keys == {
        ("ID_CARD", PERSON.value),
        ("USCC", COMPANY.value),
        ("ORG_CODE", COMPANY_ORG_CODE.value),
    }


def rows_of(
    database: Database, adapter_id: str
) -> list[tuple[str, list[object], set[tuple[str, str]]]]:
    """(source record id, every stored column but id and adapter, its keys) per record."""
    columns = (
        RecordRow.department,
        RecordRow.record_type,
        RecordRow.subject_kind,
        RecordRow.subject_value,
        RecordRow.fields,
        RecordRow.related_subjects,
        RecordRow.content_hash,
        RecordRow.fetched_at,
        RecordRow.source_updated_at,
        RecordRow.withdrawn_at,
    )
    with database.transaction(readonly=True) as session:
        found = []
        for record_id, source_id, *rest in session.execute(
            sa.select(RecordRow.id, RecordRow.source_record_id, *columns).where(
                RecordRow.adapter_id == adapter_id
            )
        ):
            keys = session.execute(
                sa.select(RecordKeyRow.kind, RecordKeyRow.value).where(
                    RecordKeyRow.record_id == record_id
                )
            )
            found.append((source_id, rest, {(kind, value) for kind, value in keys}))
        return found


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_a_rewrite_changes_only_changed_records_and_refiles_their_keys(
    database: Database, count: int
) -> None:
    first = write(database, [deed(n) for n in range(count)], T0)
    later = T0 + timedelta(hours=1)
    changed = {n for n in range(count) if n % 4 == 0}
    again = [
        deed(n, subject=OTHER_PERSON, note="moved") if n in changed else deed(n)
        for n in range(count)
    ]

    second = write(database, again, later)

    assert second.record_ids == first.record_ids  # rewritten in place, same ids
    assert sorted(second.applied) == sorted(("real_estate_right", f"RE-{n:05d}") for n in changed)
    assert second.unchanged == count - len(changed)
    repository = RecordRepository(database)
    moved = by_id(repository.find(OTHER_PERSON))
    assert set(moved) == {f"RE-{n:05d}" for n in changed}
    assert all(record.fetched_at == later for record in moved.values())
    stayed = by_id(repository.find(PERSON))
    assert set(stayed) == {f"RE-{n:05d}" for n in range(count) if n not in changed}
    assert all(record.fetched_at == T0 for record in stayed.values())


def test_two_bulk_writes_in_one_transaction_each_write_only_their_own(
    database: Database,
) -> None:
    first = prepare_records("land", "自然资源局", [deed(n) for n in range(LARGE)], T0)
    second = prepare_records("land", "自然资源局", [deed(n) for n in range(LARGE, 2 * LARGE)], T0)

    with database.transaction() as session:
        one = write_changed_records_in(session, "land", first)
        two = write_changed_records_in(session, "land", second)

    assert set(one.record_ids) == {item.identity for item in first}
    assert set(two.record_ids) == {item.identity for item in second}
    assert {**one.record_ids, **two.record_ids} == stored_ids(database)
    with database.transaction(readonly=True) as session:
        keys = session.scalar(sa.select(sa.func.count()).select_from(RecordKeyRow))
    with_company = sum(1 for n in range(2 * LARGE) if n % 2)
    # Each record: its subject; odd ones also the company's USCC and organization code.
    assert keys == 2 * LARGE + 2 * with_company


def write_then_fail(database: Database, records: Sequence[SourceRecord]) -> None:
    prepared = prepare_records("land", "自然资源局", records, T0)
    with database.transaction() as session:
        write_changed_records_in(session, "land", prepared)
        raise RuntimeError("abandoned")


def test_a_bulk_write_rolled_back_leaves_nothing_for_the_next_one(database: Database) -> None:
    with pytest.raises(RuntimeError, match="abandoned"):
        write_then_fail(database, [deed(n) for n in range(LARGE)])
    assert stored_ids(database) == {}

    other = [deed(n) for n in range(LARGE, LARGE + 70)]
    written = write(database, other, T0)

    assert set(written.record_ids) == {("real_estate_right", r.source_record_id) for r in other}
    assert written.record_ids == stored_ids(database)


@pytest.mark.parametrize("count", [SMALL, LARGE])
def test_sealed_fields_are_written_sealed_either_way(database: Database, count: int) -> None:
    cipher = FieldCipher({"k1": b"\x07" * 32}, "k1")
    records = [deed(n) for n in range(count)]
    prepared = prepare_records("land", "自然资源局", records, T0)

    with database.transaction() as session:
        write_changed_records_in(session, "land", prepared, cipher=cipher)

    with database.transaction(readonly=True) as session:
        at_rest = list(session.scalars(sa.select(RecordRow.fields)))
    assert len(at_rest) == count
    assert all(fields.get("$sealed") == "A256GCM" for fields in at_rest)
    found = by_id(RecordRepository(database, cipher).find(PERSON))
    assert {key: record.fields for key, record in found.items()} == {
        record.source_record_id: record.fields for record in records
    }
