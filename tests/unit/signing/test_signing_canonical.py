"""RFC 8785 canonical JSON out, strict JSON in."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from signing import CanonicalizationError, canonicalize, loads_object

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_numbers_follow_rfc8785_appendix_b(bits: str, expected: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonicalize(number) == expected.encode()


def test_rfc8785_section_3_2_4_example() -> None:
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert (
        canonicalize(value)
        == (
            '{"literals":[null,true,false],'
            '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        ).encode()
    )


def test_rfc8785_section_3_2_3_sorts_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonicalize(value)))
    # The emoji is a surrogate pair (D83D DE00), so it sorts before U+FB33.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_mappings_and_sequences_of_any_kind_are_plain_json() -> None:
    from types import MappingProxyType

    assert canonicalize(MappingProxyType({"b": (1, 2), "a": [True, None]})) == (
        b'{"a":[true,null],"b":[1,2]}'
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(2**53 + 1, id="integer-no-double-holds"),
        pytest.param(-(2**53) - 1, id="negative-integer-no-double-holds"),
        pytest.param(10**400, id="integer-beyond-any-double"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param({1: "x"}, id="non-string-key"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({"a": {1, 2}}, id="set"),
    ],
)
def test_values_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises(CanonicalizationError) as caught:
        canonicalize(value)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidRequest)


@pytest.mark.parametrize(
    ("value", "text"),
    [(2**53 - 1, b"9007199254740991"), (2**53, b"9007199254740992"), (10**21, b"1e+21")],
)
def test_integers_a_double_holds_exactly_are_accepted(value: int, text: bytes) -> None:
    assert canonicalize(value) == text


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b'{"a":1,"a":2}', "duplicate member 'a'"),
        (b'{"a":{"b":1,"b":1}}', "duplicate member 'b'"),
        (b'{"a":NaN}', "NaN is not JSON"),
        (b'{"a":Infinity}', "Infinity is not JSON"),
        (b"[1,2]", "top level is not a JSON object"),
        (b'"text"', "top level is not a JSON object"),
        (b'{"a":1} ', "data after the JSON value"),
        (b' {"a":1}', "not JSON"),
        (b'{"a":1}{}', "data after the JSON value"),
        (b'{"a":"\xff"}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not JSON"),
        (b'{"a":1', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_strict_parse_refuses(data: bytes, rule: str) -> None:
    with pytest.raises(CanonicalizationError) as caught:
        loads_object(data)
    assert rule in caught.value.rule


def test_duplicates_may_be_allowed_explicitly() -> None:
    assert loads_object(b'{"a":1,"a":2}', reject_duplicates=False) == {"a": 2}


def test_a_large_double_does_not_survive_parse_and_recanonicalize() -> None:
    text = canonicalize(4.335715414111057e16)
    assert text == b"43357154141110570"
    with pytest.raises(CanonicalizationError, match="not exactly representable"):
        canonicalize(json.loads(text))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    # Beyond 2**53 a double's shortest form may not be its exact value ("4.335715414111057e16"
    # is written 43357154141110570), which parses back as an integer no double holds.
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**53), max_value=2.0**53)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6))
def test_canonical_form_is_a_fixed_point(value: dict[str, object]) -> None:
    once = canonicalize(value)  # type: ignore[arg-type]
    assert canonicalize(loads_object(once)) == once
