"""`check_message`: every request field, at any depth, against the wire rules."""

from __future__ import annotations

import math

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from exchange.generated import adapters_pb2, audit_pb2, common_pb2, exchange_pb2
from exchange.services.wire_checks import check_message, text_problem


def field_of(message) -> str:
    with pytest.raises(InvalidRequest) as raised:
        check_message(message)
    return raised.value.field


def test_control_characters_anywhere_name_the_field():
    request = exchange_pb2.BatchLookupRequest(
        subjects=[
            common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="ok"),
            common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="b\x00d"),
        ]
    )
    assert field_of(request) == "subjects[1].value"
    assert field_of(exchange_pb2.LookupRequest(record_types=["a", "b\x1b"])) == "record_types[1]"


def test_struct_keys_values_and_numbers_are_checked():
    settings = struct_pb2.Struct()
    settings.update({"headers": {"X-A": "fine"}, "list": [1, "two\x00"]})
    spec = adapters_pb2.AdapterSpec(settings=settings)
    assert field_of(adapters_pb2.RegisterRequest(spec=spec)) == "spec.settings.list[1]"
    settings = struct_pb2.Struct()
    settings.fields["ba\x00d"].string_value = "x"
    assert field_of(adapters_pb2.AdapterSpec(settings=settings)) == "settings key"
    for number in (math.nan, math.inf, -math.inf):
        settings = struct_pb2.Struct()
        settings.fields["deep"].struct_value.fields["n"].number_value = number
        assert field_of(adapters_pb2.AdapterSpec(settings=settings)) == "settings.deep.n"


@pytest.mark.parametrize(
    "stamp",
    [
        timestamp_pb2.Timestamp(seconds=10**15),
        timestamp_pb2.Timestamp(seconds=-(10**15)),
        timestamp_pb2.Timestamp(seconds=253_402_300_800),
        timestamp_pb2.Timestamp(nanos=-1),
        timestamp_pb2.Timestamp(nanos=1_000_000_000),
    ],
)
def test_timestamps_outside_their_range(stamp):
    assert field_of(audit_pb2.ListAccessRequest(since=stamp)) == "since"


@pytest.mark.parametrize(
    "span",
    [
        duration_pb2.Duration(seconds=315_576_000_001),
        duration_pb2.Duration(seconds=1, nanos=-1),
        duration_pb2.Duration(seconds=-1, nanos=1),
        duration_pb2.Duration(nanos=1_000_000_000),
    ],
)
def test_durations_outside_their_range(span):
    assert field_of(exchange_pb2.LookupRequest(max_staleness=span)) == "max_staleness"


def test_ordinary_text_passes():
    check_message(
        exchange_pb2.LookupRequest(
            purpose=common_pb2.Purpose(case_id="BJ-2024-0003", reason="居住证办理\t第 2 次\n"),
            max_staleness=duration_pb2.Duration(seconds=3600),
        )
    )


@given(st.text())
def test_text_problem_refuses_exactly_the_control_characters(text):
    bad = [
        c
        for c in text
        if (ord(c) < 0x20 and c not in "\t\n\r")
        or 0x7F <= ord(c) <= 0x9F
        or 0xD800 <= ord(c) <= 0xDFFF
    ]
    assert (text_problem(text) is None) == (not bad)
