"""Sorting a change batch out: collapse per record, dead letters for refused rows, and
prepared rows whose content hash is the hub's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import Adapter, AdapterSpec, Change, ChangeBatch, ChangeKind
from certstore.records import prepare_records
from domain.errors import InvalidRequest
from domain.records import SourceRecord, content_hash
from domain.subjects import KeyKind, parse_key
from domain.sync_jobs import DeadLetterDraft
from exchange.record_types import RecordTypes
from exchange.settings import RecordTypeSettings
from exchange.sync.replay import record_from_document
from exchange.sync.runner import record_document, sort_out

TYPE = "social_security.enrolment"
KEY = parse_key(KeyKind.ID_CARD, "11010519491231002X")
TYPES = RecordTypes({TYPE: RecordTypeSettings(fields={"status": "string", "since": "date"})})


class Quiet(Adapter):
    async def _fetch(self, subject: Any, record_types: Any, purpose: Any) -> list[Any]:
        return []


ADAPTER = Quiet(
    AdapterSpec(
        adapter_id="a", kind="python", department="d", serves={TYPE: frozenset({KeyKind.ID_CARD})}
    )
)


def up(record_id: str, **fields: Any) -> Change:
    record = SourceRecord(TYPE, record_id, KEY, fields)
    return Change(ChangeKind.UPSERT, TYPE, record_id, record)


def gone(record_id: str) -> Change:
    return Change(ChangeKind.DELETE, TYPE, record_id)


def refused(record_id: str, reason: str) -> Change:
    return Change(ChangeKind.REJECTED, TYPE, record_id, reason=reason, raw={"id": record_id})


def test_the_last_change_to_a_record_wins() -> None:
    batch = ChangeBatch(
        (up("1", status="a"), up("1", status="b"), up("2"), gone("2"), gone("3"), up("3")),
        "c",
        total_estimate=40,
    )

    sorted_out = sort_out(batch, ADAPTER, TYPES)

    assert [(r.source_record_id, r.fields) for r in sorted_out.upserts] == [
        ("1", {"status": "b"}),
        ("3", {}),
    ]
    assert sorted_out.deletions == ((TYPE, "2"),)
    assert (sorted_out.changes_read, sorted_out.cursor, sorted_out.remaining_estimate) == (
        6,
        "c",
        40,
    )


def test_refused_rows_become_dead_letters_unless_a_good_change_follows() -> None:
    batch = ChangeBatch(
        (
            refused("1", "bad key"),
            up("1", status="fixed"),  # the source sent a good row after: it wins
            up("2", status="good"),
            up("2", status=7),  # a later bad row: the earlier good one still applies
            refused("3", "unreadable"),
            up("4", remark="x"),
        ),
        "c",
    )

    sorted_out = sort_out(batch, ADAPTER, TYPES)

    assert [r.source_record_id for r in sorted_out.upserts] == ["1", "2"]
    assert sorted_out.upserts[1].fields == {"status": "good"}
    reasons = {d.source_record_id: d.reason for d in sorted_out.dead_letters}
    assert reasons == {
        "2": "field 'status' must be string, got int",
        "3": "unreadable",
        "4": f"field 'remark' is not declared for {TYPE}",
    }
    assert next(d for d in sorted_out.dead_letters if d.source_record_id == "3").raw == {"id": "3"}


def test_a_record_of_a_type_the_adapter_does_not_serve_is_refused() -> None:
    other = SourceRecord("other.thing", "9", KEY, {})
    batch = ChangeBatch((Change(ChangeKind.UPSERT, "other.thing", "9", other),), "c")

    (letter,) = sort_out(batch, ADAPTER, TYPES).dead_letters

    assert letter == DeadLetterDraft(
        "other.thing",
        "9",
        "the adapter does not serve other.thing",
        record=record_document(other),
    )


def test_a_kept_record_document_round_trips() -> None:
    record = SourceRecord(
        TYPE,
        "1",
        KEY,
        {"status": "正常", "since": "2020-01-01"},
        (parse_key(KeyKind.USCC, "91350100M000100Y43"),),
        datetime(2024, 5, 1, tzinfo=UTC),
    )

    assert record_from_document(record_document(record)) == record


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_prepared_rows_carry_the_hubs_content_hash(fields: dict[str, Any]) -> None:
    record = SourceRecord(TYPE, "1", KEY, fields)
    try:
        expected = content_hash(fields)
    except InvalidRequest:
        with pytest.raises(InvalidRequest):
            prepare_records("a", "d", [record], datetime.now(UTC))
        return

    (prepared,) = prepare_records("a", "d", [record], datetime.now(UTC))

    assert prepared.row["content_hash"] == expected
    assert prepared.fields == fields
