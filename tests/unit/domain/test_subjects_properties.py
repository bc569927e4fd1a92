"""Property tests for subject keys: generated valid keys, mutations, arbitrary input."""

from __future__ import annotations

import datetime
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.errors import InvalidKey
from domain.subjects import (
    KeyKind,
    SubjectKey,
    id_card_check_char,
    mask_identifiers,
    normalize,
    org_code_check_char,
    parse_key,
    uscc_check_char,
)

MODEST = settings(max_examples=200, deadline=None)
TODAY = datetime.date(2025, 6, 30)

PROVINCE_CODES = [
    *(str(code) for code in range(11, 16)),
    *(str(code) for code in range(21, 24)),
    *(str(code) for code in range(31, 38)),
    *(str(code) for code in range(41, 47)),
    *(str(code) for code in range(50, 55)),
    *(str(code) for code in range(61, 66)),
    "71",
    "81",
    "82",
    "83",
]
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ORG_ALPHABET = string.digits + string.ascii_uppercase
ID_ALPHABET = string.digits + "X"


def digits(count: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=count, max_size=count)


@st.composite
def id_cards(draw: st.DrawFn) -> str:
    """A valid 18-character ID number: province-level prefix or 9, real past birth date."""
    division = draw(
        st.one_of(
            st.builds(str.__add__, st.sampled_from(PROVINCE_CODES), digits(4)),
            st.builds(str.__add__, st.just("9"), digits(5)),
        )
    )
    born = draw(st.dates(datetime.date(1900, 1, 1), datetime.date(2020, 12, 31)))
    sequence = draw(digits(3))
    body = f"{division}{born:%Y%m%d}{sequence}"
    return body + id_card_check_char(body)


@st.composite
def org_code_bodies(draw: st.DrawFn, alphabet: str) -> str:
    body = draw(st.text(alphabet=alphabet, min_size=8, max_size=8))
    return body + org_code_check_char(body)


@st.composite
def usccs(draw: st.DrawFn) -> str:
    """A valid USCC: authority, category, division, a valid org code, computed check."""
    authority = draw(st.sampled_from("123456789ANY"))
    category = draw(st.sampled_from(USCC_ALPHABET))
    division = draw(digits(6))
    org_code = draw(org_code_bodies(USCC_ALPHABET))
    body = f"{authority}{category}{division}{org_code}"
    return body + uscc_check_char(body)


def org_codes() -> st.SearchStrategy[str]:
    """A valid org code in its normalized ``XXXXXXXX-C`` form."""
    return org_code_bodies(ORG_ALPHABET).map(lambda code: f"{code[:8]}-{code[8]}")


VALID_KEYS = st.one_of(
    id_cards().map(lambda value: (KeyKind.ID_CARD, value)),
    usccs().map(lambda value: (KeyKind.USCC, value)),
    org_codes().map(lambda value: (KeyKind.ORG_CODE, value)),
)


@st.composite
def respelled(draw: st.DrawFn, value: str) -> str:
    """Spell `value` as a person might type it: full-width, lower case, stray spaces."""
    chars = []
    for char in value:
        style = draw(st.sampled_from(["as-is", "full-width", "lower", "space-before"]))
        if style == "full-width" and char.isascii() and char.isalnum():
            chars.append(chr(ord(char) + 0xFEE0))
        elif style == "lower":
            chars.append(char.lower())
        elif style == "space-before":
            chars.append(draw(st.sampled_from([" ", "\u3000", "\t"])) + char)
        else:
            chars.append(char)
    return "".join(chars)


@MODEST
@given(VALID_KEYS)
def test_generated_keys_validate_and_round_trip(kind_and_value: tuple[KeyKind, str]) -> None:
    kind, value = kind_and_value

    key = parse_key(kind, value, today=TODAY)

    assert key == SubjectKey(kind, value)
    assert normalize(key.value) == key.value
    assert parse_key(kind, key.value, today=TODAY) == key


@MODEST
@given(VALID_KEYS, st.data())
def test_respelled_keys_normalize_to_the_same_key(
    kind_and_value: tuple[KeyKind, str], data: st.DataObject
) -> None:
    kind, value = kind_and_value
    raw = data.draw(respelled(value), label="raw")

    assert parse_key(kind, raw, today=TODAY) == SubjectKey(kind, value)


@MODEST
@given(org_code_bodies(ORG_ALPHABET))
def test_org_code_without_hyphen_gets_one(compact: str) -> None:
    assert parse_key(KeyKind.ORG_CODE, compact).value == f"{compact[:8]}-{compact[8]}"


@MODEST
@given(usccs())
def test_uscc_relates_to_a_valid_org_code(value: str) -> None:
    (org_code,) = parse_key(KeyKind.USCC, value).related()

    assert parse_key(KeyKind.ORG_CODE, org_code.value) == org_code


@MODEST
@given(VALID_KEYS, st.data())
def test_any_single_substitution_raises_or_still_satisfies_every_rule(
    kind_and_value: tuple[KeyKind, str], data: st.DataObject
) -> None:
    kind, value = kind_and_value
    position = data.draw(st.integers(0, len(value) - 1), label="position")
    replacement = data.draw(st.characters(), label="replacement")
    mutant = value[:position] + replacement + value[position + 1 :]

    try:
        key = parse_key(kind, mutant, today=TODAY)
    except InvalidKey:
        return
    # Still valid: re-validating the result agrees, and the check character was not
    # changed (it is fully determined by the rest).
    assert parse_key(kind, key.value, today=TODAY) == key
    assert position != len(value) - 1 or normalize(replacement) == value[-1]


@MODEST
@given(VALID_KEYS, st.data())
def test_a_different_check_character_always_raises(
    kind_and_value: tuple[KeyKind, str], data: st.DataObject
) -> None:
    kind, value = kind_and_value
    replacement = data.draw(
        st.one_of(st.sampled_from(USCC_ALPHABET + "IOSVZ"), st.characters()), label="check"
    )
    assume(normalize(replacement) != value[-1])

    try:
        parse_key(kind, value[:-1] + replacement, today=TODAY)
    except InvalidKey:
        return
    raise AssertionError(f"check {replacement!r} accepted in place of {value[-1]!r}")


@MODEST
@given(id_cards(), st.data())
def test_id_card_detects_every_single_substitution(value: str, data: st.DataObject) -> None:
    # ISO 7064 MOD 11-2 detects every single-character substitution.
    position = data.draw(st.integers(0, 17), label="position")
    replacement = data.draw(st.sampled_from(ID_ALPHABET), label="replacement")
    assume(replacement != value[position])

    try:
        parse_key(KeyKind.ID_CARD, value[:position] + replacement + value[position + 1 :])
    except InvalidKey:
        return
    raise AssertionError(f"{replacement!r} at position {position + 1} went undetected")


@MODEST
@given(usccs(), st.data())
def test_uscc_detects_every_single_substitution(value: str, data: st.DataObject) -> None:
    # MOD 31 with weights that are non-zero mod the prime 31 detects every substitution
    # within the 31-character alphabet.
    position = data.draw(st.integers(0, 17), label="position")
    replacement = data.draw(st.sampled_from(USCC_ALPHABET), label="replacement")
    assume(replacement != value[position])

    try:
        parse_key(KeyKind.USCC, value[:position] + replacement + value[position + 1 :])
    except InvalidKey:
        return
    raise AssertionError(f"{replacement!r} at position {position + 1} went undetected")


def parse_or_error(kind: KeyKind, raw: str) -> SubjectKey | InvalidKey:
    try:
        return parse_key(kind, raw, today=TODAY)
    except InvalidKey as exc:
        return exc


KEYISH_TEXT = st.text(
    alphabet="0123456789XxABCIOSZ-()（）〔〕 \u3000不动产权证明第号苏京国用集建他项字出",
    max_size=40,
)


@MODEST
@given(st.sampled_from(KeyKind), st.one_of(st.text(), KEYISH_TEXT))
def test_parse_key_raises_nothing_but_invalid_key(kind: KeyKind, raw: str) -> None:
    outcome = parse_or_error(kind, raw)

    if isinstance(outcome, InvalidKey):
        assert outcome.kind == kind
        assert outcome.key_rule
        return
    key = outcome
    assert key.kind is kind
    assert parse_key(kind, key.value, today=TODAY) == key
    assert len(key.masked()) == len(key.value)


@MODEST
@given(st.text(max_size=60), st.text(max_size=20))
def test_unknown_kinds_raise_invalid_key(kind: str, raw: str) -> None:
    assume(kind not in KeyKind.__members__)

    with pytest.raises(InvalidKey, match="known kinds"):
        parse_key(kind, raw)


@MODEST
@given(st.text())
def test_mask_identifiers_accepts_any_text(text: str) -> None:
    assert isinstance(mask_identifiers(text), str)


SURROUNDINGS = st.text(
    alphabet=st.characters(categories=["Lo", "Zs", "Po", "Sm"]),
    max_size=12,
)


@MODEST
@given(SURROUNDINGS, st.one_of(id_cards(), usccs()), SURROUNDINGS, st.booleans())
def test_mask_identifiers_never_lets_an_identifier_through(
    before: str, identifier: str, after: str, lower: bool
) -> None:
    written = identifier.lower() if lower else identifier
    text = f"{before}{written}{after}"

    masked = mask_identifiers(text)

    assert identifier not in masked
    assert written not in masked


@MODEST
@given(VALID_KEYS)
def test_masked_form_hides_the_middle(kind_and_value: tuple[KeyKind, str]) -> None:
    kind, value = kind_and_value
    key = parse_key(kind, value, today=TODAY)

    assert str(key) == key.masked()
    assert key.value not in repr(key)
    assert key.masked().count("*") >= 6
