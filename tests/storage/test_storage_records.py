"""RecordRepository on every backend: idempotent upserts, keys, filters, round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from certstore.database import Database
from certstore.models import RecordKeyRow, RecordRow
from certstore.records import UPSERT_BATCH_SIZE, RecordRepository
from domain.errors import InvalidRequest
from domain.records import SourceRecord, content_hash
from domain.subjects import KeyKind, SubjectKey, parse_key

COMPANY = parse_key(KeyKind.USCC, "91320100MA1FL8XQ1A")
COMPANY_ORG_CODE = SubjectKey(KeyKind.ORG_CODE, "MA1FL8XQ-1")
PERSON = parse_key(KeyKind.ID_CARD, "11010519491231002X")
UNIT = SubjectKey(KeyKind.REAL_ESTATE_UNIT, "320102003001GB00012F00010001")
T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
CHINA = timezone(timedelta(hours=8))


def business_licence(
    source_record_id: str = "BL-1", name: str = "南京通办科技有限公司", **extra: object
) -> SourceRecord:
    return SourceRecord(
        record_type="business_licence",
        source_record_id=source_record_id,
        subject=COMPANY,
        fields={"name": name, "legal_representative": "张三", **extra},
    )


def household(source_record_id: str = "HH-1", address: str = "北京市东城区") -> SourceRecord:
    return SourceRecord(
        record_type="household_registration",
        source_record_id=source_record_id,
        subject=PERSON,
        fields={"name": "李四", "address": address},
    )


@pytest.fixture
def repository(database: Database) -> RecordRepository:
    return RecordRepository(database)


def row_count(database: Database, entity: type[RecordRow] | type[RecordKeyRow]) -> int:
    with database.transaction(readonly=True) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(entity)) or 0


def record_ids(database: Database) -> list[int]:
    with database.transaction(readonly=True) as session:
        return list(session.scalars(sa.select(RecordRow.id).order_by(RecordRow.id)))


def test_upsert_returns_stored_records_with_provenance(repository: RecordRepository) -> None:
    [stored] = repository.upsert_records("market", "市场监督管理局", [business_licence()], T0)

    assert stored.adapter_id == "market"
    assert stored.department == "市场监督管理局"
    assert stored.record_type == "business_licence"
    assert stored.source_record_id == "BL-1"
    assert stored.subject == COMPANY
    assert stored.fetched_at == T0
    assert stored.content_hash == content_hash(business_licence().fields)
    assert repository.find(COMPANY) == [stored]


def test_upserting_the_same_records_twice_keeps_rows_and_hashes(
    database: Database, repository: RecordRepository
) -> None:
    records = [business_licence(), household()]
    first = repository.upsert_records("src", "dept", records, T0)
    ids_after_first = record_ids(database)
    keys_after_first = row_count(database, RecordKeyRow)

    second = repository.upsert_records("src", "dept", records, T0 + timedelta(minutes=5))

    assert record_ids(database) == ids_after_first
    assert len(ids_after_first) == 2
    assert row_count(database, RecordKeyRow) == keys_after_first
    assert [s.content_hash for s in second] == [f.content_hash for f in first]
    assert [s.fetched_at for s in second] == [T0 + timedelta(minutes=5)] * 2


def test_update_changes_hash_and_fetched_at(repository: RecordRepository) -> None:
    [old] = repository.upsert_records("src", "dept", [business_licence()], T0)
    later = T0 + timedelta(hours=1)

    repository.upsert_records("src", "dept", [business_licence(name="南京通办有限公司")], later)

    [found] = repository.find(COMPANY)
    assert found.fields["name"] == "南京通办有限公司"
    assert found.content_hash != old.content_hash
    assert found.fetched_at == later


def test_same_source_record_id_from_other_adapters_or_types_is_a_different_record(
    database: Database, repository: RecordRepository
) -> None:
    repository.upsert_records("a", "dept", [business_licence("X")], T0)
    repository.upsert_records("b", "dept", [business_licence("X")], T0)
    repository.upsert_records("a", "dept", [household("X")], T0)

    assert row_count(database, RecordRow) == 3


def test_a_record_repeated_in_one_batch_is_stored_once_last_copy_winning(
    database: Database, repository: RecordRepository
) -> None:
    stored = repository.upsert_records(
        "src", "dept", [business_licence(name="旧"), household(), business_licence(name="新")], T0
    )

    assert [s.record_type for s in stored] == ["business_licence", "household_registration"]
    assert stored[0].fields["name"] == "新"
    assert row_count(database, RecordRow) == 2


def test_an_empty_batch_stores_nothing(database: Database, repository: RecordRepository) -> None:
    assert repository.upsert_records("src", "dept", [], T0) == []
    assert row_count(database, RecordRow) == 0


def test_batches_larger_than_one_statement(
    database: Database, repository: RecordRepository
) -> None:
    count = UPSERT_BATCH_SIZE * 2 + 7
    records = [household(f"HH-{n:05d}", address=f"地址{n}") for n in range(count)]

    stored = repository.upsert_records("src", "dept", records, T0)

    assert [s.source_record_id for s in stored] == [r.source_record_id for r in records]
    assert row_count(database, RecordRow) == count
    assert len(repository.find(PERSON)) == count


def test_org_code_finds_records_filed_under_the_uscc(repository: RecordRepository) -> None:
    [stored] = repository.upsert_records("market", "dept", [business_licence()], T0)

    assert repository.find(COMPANY_ORG_CODE) == [stored]


def test_related_subjects_are_filed_and_round_trip(repository: RecordRepository) -> None:
    deed = SourceRecord(
        record_type="real_estate_right",
        source_record_id="RE-1",
        subject=UNIT,
        fields={"area_m2": 89.5},
        related_subjects=(PERSON, COMPANY),
    )
    [stored] = repository.upsert_records("land", "自然资源局", [deed], T0)

    assert stored.related_subjects == (PERSON, COMPANY)
    for key in (UNIT, PERSON, COMPANY, COMPANY_ORG_CODE):
        assert repository.find(key) == [stored], key.kind


def test_changing_a_records_subject_refiles_it(repository: RecordRepository) -> None:
    repository.upsert_records("src", "dept", [business_licence()], T0)
    moved = SourceRecord(
        record_type="business_licence",
        source_record_id="BL-1",
        subject=PERSON,
        fields={"name": "个体户"},
    )

    repository.upsert_records("src", "dept", [moved], T0)

    assert repository.find(COMPANY) == []
    assert repository.find(COMPANY_ORG_CODE) == []
    assert [r.subject for r in repository.find(PERSON)] == [PERSON]


def test_record_types_filter(repository: RecordRepository) -> None:
    repository.upsert_records("src", "dept", [business_licence()], T0)
    repository.upsert_records(
        "tax",
        "税务局",
        [SourceRecord("tax_registration", "T-1", COMPANY, {"status": "正常"})],
        T0,
    )

    assert {r.record_type for r in repository.find(COMPANY)} == {
        "business_licence",
        "tax_registration",
    }
    assert [r.record_type for r in repository.find(COMPANY, ["tax_registration"])] == [
        "tax_registration"
    ]
    assert repository.find(COMPANY, ["no_such_type"]) == []
    assert repository.find(COMPANY, []) == []


def test_adapter_and_fetched_since_filters(repository: RecordRepository) -> None:
    repository.upsert_records("old", "dept", [business_licence("A")], T0)
    repository.upsert_records("new", "dept", [business_licence("B")], T0 + timedelta(days=1))

    assert [r.adapter_id for r in repository.find(COMPANY, adapter_ids={"old"})] == ["old"]
    assert repository.find(COMPANY, adapter_ids=[]) == []
    since = (T0 + timedelta(hours=1)).astimezone(CHINA)
    assert [r.adapter_id for r in repository.find(COMPANY, fetched_since=since)] == ["new"]
    assert len(repository.find(COMPANY, fetched_since=T0)) == 2


def test_find_returns_newest_fetch_first(repository: RecordRepository) -> None:
    for hours, record_id in [(1, "B"), (3, "D"), (0, "A"), (2, "C")]:
        repository.upsert_records(
            "src", "dept", [business_licence(record_id)], T0 + timedelta(hours=hours)
        )

    assert [r.source_record_id for r in repository.find(COMPANY)] == ["D", "C", "B", "A"]


def test_withdrawn_records_are_not_found_until_upserted_again(
    database: Database, repository: RecordRepository
) -> None:
    repository.upsert_records("src", "dept", [business_licence(), household()], T0)
    with database.transaction() as session:
        session.execute(
            sa.update(RecordRow)
            .where(RecordRow.source_record_id == "BL-1")
            .values(withdrawn_at=T0 + timedelta(minutes=1))
        )

    assert repository.find(COMPANY) == []
    assert len(repository.find(PERSON)) == 1

    repository.upsert_records("src", "dept", [business_licence()], T0 + timedelta(minutes=2))

    assert len(repository.find(COMPANY)) == 1
    with database.transaction(readonly=True) as session:
        assert session.scalars(sa.select(RecordRow.withdrawn_at)).all() == [None, None]


def test_deleting_a_record_deletes_its_keys(
    database: Database, repository: RecordRepository
) -> None:
    repository.upsert_records("src", "dept", [business_licence()], T0)
    assert row_count(database, RecordKeyRow) == 2

    with database.transaction() as session:
        session.execute(sa.delete(RecordRow))

    assert row_count(database, RecordKeyRow) == 0


def test_json_fields_with_chinese_text_round_trip_exactly(repository: RecordRepository) -> None:
    fields = {
        "name": "南京通办科技有限公司",
        "address": "江苏省南京市玄武区中山路１号（Ａ座）",
        "scope": ["软件开发", "信息技术咨询服务", "𠀀𪚥 (Extension B)"],
        "capital": {"amount": 1000000, "currency": "人民币", "ratio": 0.25},
        "quote": '引号 " 反斜杠 \\ 换行\n制表\t',
        "empty": "",
        "nothing": None,
        "flag": True,
        "nested": [[{"键": "值"}]],
    }
    record = SourceRecord("business_licence", "BL-1", COMPANY, fields)
    [stored] = repository.upsert_records("src", "市场监督管理局", [record], T0)

    [found] = repository.find(COMPANY)

    assert found.fields == fields
    assert found.department == "市场监督管理局"
    assert found.content_hash == stored.content_hash == content_hash(fields)


def test_timestamps_come_back_timezone_aware_in_utc(repository: RecordRepository) -> None:
    beijing_time = datetime(2026, 3, 1, 16, 30, 15, 123456, tzinfo=CHINA)

    [stored] = repository.upsert_records("src", "dept", [business_licence()], beijing_time)
    [found] = repository.find(COMPANY)

    for value in (stored.fetched_at, found.fetched_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
        assert value == T0


def test_source_updated_at_is_stored_in_utc(
    database: Database, repository: RecordRepository
) -> None:
    updated = datetime(2026, 2, 28, 9, 0, tzinfo=CHINA)
    record = SourceRecord("business_licence", "BL-1", COMPANY, {"n": 1}, updated_at=updated)
    repository.upsert_records("src", "dept", [record], T0)

    with database.transaction(readonly=True) as session:
        stored_value = session.scalar(sa.select(RecordRow.source_updated_at))

    assert stored_value == updated
    assert stored_value is not None
    assert stored_value.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(repository: RecordRepository) -> None:
    with pytest.raises(ValueError, match="fetched_at"):
        repository.upsert_records("src", "dept", [business_licence()], datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="fetched_since"):
        repository.find(COMPANY, fetched_since=datetime(2026, 3, 1))


def test_fields_that_are_not_json_store_nothing(
    database: Database, repository: RecordRepository
) -> None:
    bad = SourceRecord("business_licence", "BL-2", COMPANY, {"when": datetime.now(UTC)})

    with pytest.raises(InvalidRequest):
        repository.upsert_records("src", "dept", [business_licence(), bad], T0)

    assert row_count(database, RecordRow) == 0
