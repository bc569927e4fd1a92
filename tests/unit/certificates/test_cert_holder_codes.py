"""Holder type codes of the national sharing interface and the field-name aliases."""

from __future__ import annotations

import pytest

from domain.errors import InvalidRequest
from domain.subjects import KeyKind
from exchange.certificates.holder_codes import (
    HOLDER_TYPES,
    NATIONAL_FIELD_ALIASES,
    holder_from_national,
    with_national_names,
)
from exchange.generated import certificates_pb2

# (holder code, holder type code) -> (kind, normalized value) or the field at fault.
TABLE = [
    ("11010519491231002X", "111", (KeyKind.ID_CARD, "11010519491231002X")),
    ("110105491231002", "111", (KeyKind.ID_CARD, "11010519491231002X")),  # the 1989 form
    ("11010519491231002x", "112", (KeyKind.ID_CARD, "11010519491231002X")),
    ("91350100m000100y43", "001", (KeyKind.USCC, "91350100M000100Y43")),
    ("M000100Y-4", "002", (KeyKind.ORG_CODE, "M000100Y-4")),
    ("91350100M000100Y43", "111", "holder_code"),
    ("91350100M000100Y44", "001", "holder_code"),
    ("", "001", "holder_code"),
    ("E12345678", "414", "holder_type_code"),
    ("H12345678", "516", "holder_type_code"),
    ("123", "003", "holder_type_code"),
    ("123", "777", "holder_type_code"),
    ("123", "", "holder_type_code"),
]


@pytest.mark.parametrize(("code", "type_code", "expected"), TABLE)
def test_holder_codes(code: str, type_code: str, expected: object) -> None:
    if isinstance(expected, str):
        with pytest.raises(InvalidRequest) as raised:
            holder_from_national(code, type_code)
        assert raised.value.field == expected
        return
    key = holder_from_national(code, type_code)
    assert (key.kind, key.value) == expected


def test_a_known_code_no_key_kind_stands_for_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest) as raised:
        holder_from_national("E12345678", "414")
    assert "普通护照" in raised.value.rule
    assert HOLDER_TYPES["111"].key_kind is KeyKind.ID_CARD
    assert HOLDER_TYPES["001"].key_kind is KeyKind.USCC


def test_national_field_names_are_accepted_but_not_twice() -> None:
    body = {"holderCode": "X", "holderTypeCode": "001", "useCause": "开户", "page_size": 5}
    assert with_national_names(body) == {
        "holder_code": "X",
        "holder_type_code": "001",
        "use_cause": "开户",
        "page_size": 5,
    }
    with pytest.raises(InvalidRequest) as raised:
        with_national_names({"use_cause": "a", "useCause": "b"})
    assert raised.value.field == "useCause"
    assert set(NATIONAL_FIELD_ALIASES.values()) >= {"holder_code", "holder_type_code", "use_cause"}


def test_the_query_message_speaks_the_national_names_in_json() -> None:
    fields = certificates_pb2.QueryByHolderRequest.DESCRIPTOR.fields_by_name
    for national, field in NATIONAL_FIELD_ALIASES.items():
        if field in fields:
            assert fields[field].json_name == national
