"""Table tests for subject keys: normalization, validation rules, masking (SPEC.md)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from domain.errors import InvalidKey, InvalidRequest
from domain.subjects import (
    MAX_RAW_LENGTH,
    KeyKind,
    SubjectKey,
    id15_to_id18,
    id_card_check_char,
    mask_identifiers,
    normalize,
    org_code_check_char,
    parse_key,
    uscc_check_char,
)

TODAY = datetime.date(2025, 6, 30)

# GB 11643-1999 and GB 32100-2015 worked examples.
GB_ID_EXAMPLE = "11010519491231002X"
GB_ID_EXAMPLE_1880 = "440524188001010014"
GB_USCC_EXAMPLE = "91350100M000100Y43"

VALID = [
    # ID_CARD
    pytest.param(KeyKind.ID_CARD, GB_ID_EXAMPLE, GB_ID_EXAMPLE, id="id-gb11643-example"),
    pytest.param(
        KeyKind.ID_CARD, GB_ID_EXAMPLE_1880, GB_ID_EXAMPLE_1880, id="id-gb11643-born-1880"
    ),
    pytest.param(KeyKind.ID_CARD, "11010519491231002x", GB_ID_EXAMPLE, id="id-lowercase-x"),
    pytest.param(
        KeyKind.ID_CARD,
        " １１０１０５ １９４９１２３１　００２ｘ ",
        GB_ID_EXAMPLE,
        id="id-full-width-with-spaces",
    ),
    pytest.param(KeyKind.ID_CARD, "110105491231002", GB_ID_EXAMPLE, id="id-15-digit-1989-form"),
    pytest.param(KeyKind.ID_CARD, "440524800101001", "440524198001010013", id="id-15-digit-other"),
    pytest.param(
        KeyKind.ID_CARD, "110101200002290018", "110101200002290018", id="id-born-leap-day"
    ),
    pytest.param(
        KeyKind.ID_CARD, "810000199001011230", "810000199001011230", id="id-hk-residence-permit"
    ),
    pytest.param(
        KeyKind.ID_CARD, "820000199512310453", "820000199512310453", id="id-mo-residence-permit"
    ),
    pytest.param(
        KeyKind.ID_CARD, "830000198506150788", "830000198506150788", id="id-tw-residence-permit"
    ),
    pytest.param(
        KeyKind.ID_CARD, "932682198807110010", "932682198807110010", id="id-foreign-pr-2023"
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "11019919491231002X",
        "11019919491231002X",
        id="id-unknown-county-accepted",
    ),
    # USCC
    pytest.param(KeyKind.USCC, GB_USCC_EXAMPLE, GB_USCC_EXAMPLE, id="uscc-gb32100-example"),
    pytest.param(
        KeyKind.USCC, "91350100m000100y43", GB_USCC_EXAMPLE, id="uscc-lowercase-normalized"
    ),
    pytest.param(
        KeyKind.USCC, "９１３５０１００Ｍ０００１００Ｙ４３", GB_USCC_EXAMPLE, id="uscc-full-width"
    ),
    pytest.param(KeyKind.USCC, "A1110000MB0123457U", "A1110000MB0123457U", id="uscc-authority-A"),
    pytest.param(KeyKind.USCC, "N1110000MB0123457F", "N1110000MB0123457F", id="uscc-authority-N"),
    pytest.param(KeyKind.USCC, "Y1110000MB01234577", "Y1110000MB01234577", id="uscc-authority-Y"),
    pytest.param(
        KeyKind.USCC, "9Y350100M000100Y49", "9Y350100M000100Y49", id="uscc-category-not-restricted"
    ),
    pytest.param(
        KeyKind.USCC,
        "91110000D2143569X7",
        "91110000D2143569X7",
        id="uscc-embedded-org-check-X",
    ),
    # Published codes of real organizations, including post-2015 "MA" organization codes.
    *(
        pytest.param(KeyKind.USCC, code, code, id=f"uscc-published-{code}")
        for code in (
            "9144030071526726XG",
            "91110000710926094P",
            "91310000631696382C",
            "91420684MA4927PJ7B",
            "91310115MA1K3BTP2B",
            "91620105MA73NBBLXE",
            "121200004013590816",
        )
    ),
    # ORG_CODE
    pytest.param(KeyKind.ORG_CODE, "M000100Y-4", "M000100Y-4", id="org-with-hyphen"),
    pytest.param(KeyKind.ORG_CODE, "M000100Y4", "M000100Y-4", id="org-without-hyphen"),
    pytest.param(KeyKind.ORG_CODE, "m000100y－４", "M000100Y-4", id="org-full-width-hyphen"),
    pytest.param(KeyKind.ORG_CODE, "D2143569-X", "D2143569-X", id="org-check-X"),
    pytest.param(KeyKind.ORG_CODE, "d2143569x", "D2143569-X", id="org-check-lowercase-x"),
    pytest.param(KeyKind.ORG_CODE, "67869819-0", "67869819-0", id="org-check-0"),
    pytest.param(KeyKind.ORG_CODE, "12345678-8", "12345678-8", id="org-digits"),
    # REAL_ESTATE_CERT
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)南京市不动产权第0012345号",
        "苏(2017)南京市不动产权第0012345号",
        id="cert-plain",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏（2017）南京市不动产权第0012345号",
        "苏(2017)南京市不动产权第0012345号",
        id="cert-full-width-brackets",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏〔2017〕南京市 不动产权 第 0012345 号",
        "苏(2017)南京市不动产权第0012345号",
        id="cert-tortoise-brackets-and-spaces",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "京【２０１９】朝阳区不动产权第12号",
        "京(2019)朝阳区不动产权第12号",
        id="cert-lenticular-brackets-short-number",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "浙(2020)杭州市不动产证明第0098765号",
        "浙(2020)杭州市不动产证明第0098765号",
        id="cert-proof-variant",
    ),
    # REAL_ESTATE_UNIT
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB00001F00010001",
        "320102001001GB00001F00010001",
        id="unit-building",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102 001001 jc00002 w00000000",
        "320102001001JC00002W00000000",
        id="unit-lowercase-spaced",
    ),
    # LAND_CERT
    pytest.param(
        KeyKind.LAND_CERT,
        "佛禅国用(2012)第1200668号",
        "佛禅国用(2012)第1200668号",
        id="land-state-use",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "京朝国用（2005出）第0123号",
        "京朝国用(2005出)第0123号",
        id="land-granted-full-width",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "穗国用(2003)字第123号",
        "穗国用(2003)字第123号",
        id="land-zi-di",
    ),
    pytest.param(KeyKind.LAND_CERT, "某集建(2010)456", "某集建(2010)456", id="land-no-di-no-hao"),
    pytest.param(
        KeyKind.LAND_CERT, "某土他项(2009)第77号", "某土他项(2009)第77号", id="land-other-rights"
    ),
    # Variants in real use (public records of mortgages and property notices):
    pytest.param(
        KeyKind.LAND_CERT,
        "鹤国用（2014）第GN00285号",
        "鹤国用(2014)第GN00285号",
        id="land-letters-lead-the-serial",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "衡国用（2006B）第3051333号",
        "衡国用(2006B)第3051333号",
        id="land-letter-in-the-year-bracket",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "澄土国用（2008）第 3884 号",
        "澄土国用(2008)第3884号",
        id="land-spaced-serial",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "苏国用（2004）第02008490号",
        "苏国用(2004)第02008490号",
        id="land-province-prefix",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "京海国用(2006划)第7000012号",
        "京海国用(2006划)第7000012号",
        id="land-allocated-mark",
    ),
    pytest.param(
        KeyKind.LAND_CERT, "某国用(2011)第1234A号", "某国用(2011)第1234A号", id="land-letter-suffix"
    ),
]


@pytest.mark.parametrize(("kind", "raw", "value"), VALID)
def test_valid_keys_parse_to_their_normalized_value(kind: KeyKind, raw: str, value: str) -> None:
    key = parse_key(kind, raw, today=TODAY)

    assert key == SubjectKey(kind, value)
    assert parse_key(kind, key.value, today=TODAY) == key


@pytest.mark.parametrize(("kind", "raw", "value"), VALID)
def test_kind_may_be_given_by_name(kind: KeyKind, raw: str, value: str) -> None:
    assert parse_key(kind.value, raw, today=TODAY).kind is kind


INVALID = [
    # ID_CARD
    pytest.param(
        KeyKind.ID_CARD,
        "110105194912310023",
        "check character must be 'X' (ISO 7064 MOD 11-2), got '3'",
        id="id-bad-check",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "440524188001010015",
        "check character must be '4' (ISO 7064 MOD 11-2), got '5'",
        id="id-1880-bad-check",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110105194913310023",
        "birth date 19491331 is not a real date",
        id="id-day-31-of-month-13",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110101194913010015",
        "birth date 19491301 is not a real date",
        id="id-month-13",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110101202302300010",
        "birth date 20230230 is not a real date",
        id="id-feb-30",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110101190002290011",
        "birth date 19000229 is not a real date",
        id="id-1900-not-leap",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110101209901010017",
        "birth date 20990101 is in the future",
        id="id-future-birth",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110101179912310010",
        "birth date 17991231 is before 1800-01-01",
        id="id-before-1800",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "11010519491231002",
        "must be 18 characters (or 15 for the GB 11643-1989 form), got 17",
        id="id-17-chars",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "11010519491231002X0",
        "must be 18 characters (or 15 for the GB 11643-1989 form), got 19",
        id="id-19-chars",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "1101A519491231002X",
        "character 'A' at position 5 must be a digit",
        id="id-letter-in-body",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "11010519491231002Y",
        "check character (position 18) must be a digit or 'X', got 'Y'",
        id="id-check-not-digit-or-x",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "000101194912310029",
        "division code 000101 must start with a province-level code",
        id="id-province-00",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "11010549123100X",
        "character 'X' at position 15 must be a digit",
        id="id-15-with-check-char",
    ),
    pytest.param(
        KeyKind.ID_CARD,
        "110105491331002",
        "birth date 19491331 is not a real date",
        id="id-15-bad-date",
    ),
    # USCC
    pytest.param(
        KeyKind.USCC,
        "91350I00M000100Y43",
        "character 'I' at position 6 is not allowed in a USCC "
        "(GB 32100-2015 excludes I, O, S, V, Z)",
        id="uscc-excluded-I",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100MO00100Y43",
        "character 'O' at position 10 is not allowed in a USCC",
        id="uscc-excluded-O",
    ),
    pytest.param(
        KeyKind.USCC,
        "S1350100M000100Y43",
        "character 'S' at position 1 is not allowed in a USCC",
        id="uscc-excluded-S",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100V43",
        "character 'V' at position 16 is not allowed in a USCC",
        id="uscc-excluded-V",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100Y4Z",
        "character 'Z' at position 18 is not allowed in a USCC",
        id="uscc-excluded-Z",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100Y4-",
        "character '-' at position 18 is not allowed in a USCC (only digits",
        id="uscc-punctuation",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100Y4",
        "must be 18 characters, got 17",
        id="uscc-17-chars",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100Y56",
        "embedded organization code (positions 9-17) fails its GB 11714-1997 check: "
        "check character (position 17) must be '4', got '5'",
        id="uscc-bad-embedded-org-code",
    ),
    pytest.param(
        KeyKind.USCC,
        "91350100M000100Y44",
        "check character must be '3' (GB 32100-2015 MOD 31), got '4'",
        id="uscc-bad-check",
    ),
    pytest.param(
        KeyKind.USCC,
        "B1350100M000100Y41",
        "registration authority code (position 1) must be one of 1-9, A, N, Y, got 'B'",
        id="uscc-authority-B",
    ),
    pytest.param(
        KeyKind.USCC,
        "01350100M000100Y4C",
        "registration authority code (position 1) must be one of 1-9, A, N, Y, got '0'",
        id="uscc-authority-0",
    ),
    pytest.param(
        KeyKind.USCC,
        "913A0100M000100Y4P",
        "division code (positions 3-8) must be digits, got 'A' at position 4",
        id="uscc-letter-in-division",
    ),
    # ORG_CODE
    pytest.param(
        KeyKind.ORG_CODE,
        "M000100Y-5",
        "check character must be '4' (GB 11714-1997), got '5'",
        id="org-bad-check",
    ),
    pytest.param(
        KeyKind.ORG_CODE,
        "D2143569-0",
        "check character must be 'X' (GB 11714-1997), got '0'",
        id="org-0-for-X",
    ),
    pytest.param(
        KeyKind.ORG_CODE,
        "M000100-4",
        "the hyphen must follow the 8th character",
        id="org-hyphen-misplaced",
    ),
    pytest.param(
        KeyKind.ORG_CODE,
        "M000100Y",
        "must be 8 body characters and a check character (XXXXXXXX-C), got 8 characters",
        id="org-too-short",
    ),
    pytest.param(
        KeyKind.ORG_CODE,
        "M00#100Y4",
        "character '#' at position 4 must be a digit or a letter A-Z",
        id="org-punctuation",
    ),
    # REAL_ESTATE_CERT
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "中(2017)南京市不动产权第0012345号",
        "must start with a province abbreviation",
        id="cert-bad-province",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(17)南京市不动产权第0012345号",
        "4-digit year in brackets",
        id="cert-two-digit-year",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)南京市房产证第0012345号",
        "must contain 不动产权第 or 不动产证明第",
        id="cert-wrong-title",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)不动产权第0012345号",
        "must name the registering place",
        id="cert-no-place",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)NJ不动产权第0012345号",
        "place name must be written in Chinese characters",
        id="cert-latin-place",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)南京市不动产权第0012345",
        "must end with the certificate number: digits followed by 号",
        id="cert-no-hao",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)南京市不动产权第号",
        "must end with the certificate number",
        id="cert-no-number",
    ),
    # REAL_ESTATE_UNIT
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB00001F0001000",
        "must be 28 characters (GB/T 37346-2019), got 27",
        id="unit-27-chars",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "32010200100AGB00001F00010001",
        "positions 1-12 must be digits",
        id="unit-letter-in-parcel-zone",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001AB00001F00010001",
        "position 13 must be G, J or Z",
        id="unit-bad-ownership",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GZ00001F00010001",
        "position 14 must be one of A-H, S, X, W, Y",
        id="unit-bad-right-type",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB0000AF00010001",
        "positions 15-19 must be digits",
        id="unit-letter-in-parcel-number",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB00001X00010001",
        "position 20 must be F, L, Q or W",
        id="unit-bad-fixture-type",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB00001F0001000A",
        "positions 21-28 must be digits",
        id="unit-letter-in-fixture-number",
    ),
    # LAND_CERT
    pytest.param(
        KeyKind.LAND_CERT,
        "ABC(2012)1200668",
        "must look like 佛禅国用(2012)第1200668号",
        id="land-plain-ascii",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "佛禅国用第1200668号",
        "must look like",
        id="land-no-year",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "佛禅房字(2012)第1200668号",
        "the prefix must name the right",
        id="land-no-right-marker",
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "佛禅国用(2012)第号",
        "must look like",
        id="land-no-number",
    ),
    pytest.param(
        KeyKind.LAND_CERT, "佛禅国用(2012)第ABC号", "must look like", id="land-letters-no-digit"
    ),
    pytest.param(
        KeyKind.LAND_CERT, "佛禅国用(2012)第一二三号", "must look like", id="land-chinese-numerals"
    ),
    pytest.param(
        KeyKind.LAND_CERT, "佛禅国用(二〇一二)第123号", "must look like", id="land-year-not-digits"
    ),
    pytest.param(
        KeyKind.LAND_CERT,
        "佛禅国用(2012ABC)第123号",
        "must look like",
        id="land-year-mark-too-long",
    ),
    pytest.param(
        KeyKind.LAND_CERT, "请见附件国用(2012)第12号之说明", "must look like", id="land-prose"
    ),
]


@pytest.mark.parametrize(("kind", "raw", "rule"), INVALID)
def test_invalid_keys_name_the_rule_broken(kind: KeyKind, raw: str, rule: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        parse_key(kind, raw, today=TODAY)

    assert caught.value.kind == kind
    assert rule in caught.value.key_rule
    assert caught.value.field == "subject.value"


@pytest.mark.parametrize(("kind", "raw", "rule"), INVALID)
def test_rule_messages_never_repeat_the_whole_identifier(
    kind: KeyKind, raw: str, rule: str
) -> None:
    with pytest.raises(InvalidKey) as caught:
        parse_key(kind, raw, today=TODAY)

    if kind in (KeyKind.ID_CARD, KeyKind.USCC):
        assert normalize(raw) not in caught.value.message


def test_invalid_key_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match=r"^subject\.value: ID_CARD: must not be empty$"):
        parse_key(KeyKind.ID_CARD, "")


@pytest.mark.parametrize("kind", list(KeyKind), ids=str)
@pytest.mark.parametrize(
    "raw", ["", "   ", "\u3000\t\n", "\u200b\ufeff"], ids=["empty", "spaces", "ideographic", "zw"]
)
def test_empty_value_is_rejected(kind: KeyKind, raw: str) -> None:
    with pytest.raises(InvalidKey, match="must not be empty"):
        parse_key(kind, raw)


@pytest.mark.parametrize("kind", list(KeyKind), ids=str)
def test_overlong_value_is_rejected_before_normalization(kind: KeyKind) -> None:
    raw = "1" * (MAX_RAW_LENGTH + 1)

    with pytest.raises(InvalidKey, match=f"at most {MAX_RAW_LENGTH} characters, got 129"):
        parse_key(kind, raw)


def test_value_at_the_length_limit_is_validated_normally() -> None:
    raw = " " * (MAX_RAW_LENGTH - len(GB_ID_EXAMPLE)) + GB_ID_EXAMPLE

    assert parse_key(KeyKind.ID_CARD, raw).value == GB_ID_EXAMPLE


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("PASSPORT", id="unknown-name"),
        pytest.param("id_card", id="lowercase-name"),
        pytest.param("", id="empty-name"),
        pytest.param("X" * 500, id="huge-name"),
    ],
)
def test_unknown_kind_is_rejected_listing_known_kinds(kind: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        parse_key(kind, GB_ID_EXAMPLE)

    assert caught.value.field == "subject.kind"
    assert "unknown key kind" in caught.value.key_rule
    assert "ID_CARD, USCC, ORG_CODE, REAL_ESTATE_CERT, REAL_ESTATE_UNIT, LAND_CERT" in (
        caught.value.key_rule
    )
    assert len(caught.value.message) < 300


def test_non_string_kind_is_rejected_with_invalid_key() -> None:
    with pytest.raises(InvalidKey, match="key kind must be a KeyKind or its name, got NoneType"):
        parse_key(None, GB_ID_EXAMPLE)  # type: ignore[arg-type]


def test_non_string_value_is_rejected_with_invalid_key() -> None:
    with pytest.raises(InvalidKey, match="must be a string, got NoneType"):
        parse_key(KeyKind.ID_CARD, None)  # type: ignore[arg-type]


def test_future_birth_date_depends_on_today() -> None:
    raw = "110101202506300012"

    assert parse_key(KeyKind.ID_CARD, raw, today=datetime.date(2025, 6, 30)).value == raw
    with pytest.raises(InvalidKey, match="birth date 20250630 is in the future"):
        parse_key(KeyKind.ID_CARD, raw, today=datetime.date(2025, 6, 29))


def test_today_defaults_to_the_current_date() -> None:
    tomorrow = datetime.date.today() + datetime.timedelta(days=1)
    body = f"110101{tomorrow:%Y%m%d}001"

    with pytest.raises(InvalidKey, match="is in the future"):
        parse_key(KeyKind.ID_CARD, body + id_card_check_char(body))


# --- normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("１２３ＡＢＣ", "123ABC", id="full-width-alnum"),
        pytest.param("abc", "ABC", id="lowercase-latin"),
        pytest.param("  a b\tc\n ", "ABC", id="ascii-whitespace"),
        pytest.param("a\u3000b\u00a0c", "ABC", id="ideographic-and-nbsp"),
        pytest.param("a\u200bb\ufeffc\u200e", "ABC", id="invisible-format-chars"),
        pytest.param("（）", "()", id="full-width-parens"),
        pytest.param("〔〕【】［］[]〖〗", "()()()()()", id="other-brackets"),
        pytest.param("﹝2017﹞", "(2017)", id="small-tortoise-brackets"),
        pytest.param("－", "-", id="full-width-hyphen"),
        pytest.param("苏南京市", "苏南京市", id="cjk-untouched"),
        pytest.param("ßıé", "ßıé", id="non-latin-letters-not-upper-cased"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


# --- check characters and conversion -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [
        pytest.param("11010519491231002", "X", id="gb11643-example"),
        pytest.param("44052418800101001", "4", id="gb11643-1880"),
        pytest.param("11010119491231002", "4", id="digit-check"),
    ],
)
def test_id_card_check_char(body: str, check: str) -> None:
    assert id_card_check_char(body) == check


@pytest.mark.parametrize(
    ("body", "check"),
    [
        pytest.param("91350100M000100Y4", "3", id="gb32100-example"),
        pytest.param("A1110000MB0123457", "U", id="letter-check"),
        pytest.param("Y1110000MB0123457", "7", id="digit-check"),
    ],
)
def test_uscc_check_char(body: str, check: str) -> None:
    assert uscc_check_char(body) == check


@pytest.mark.parametrize(
    ("body", "check"),
    [
        pytest.param("M000100Y", "4", id="from-gb32100-example"),
        pytest.param("D2143569", "X", id="ten-is-X"),
        pytest.param("67869819", "0", id="eleven-is-0"),
        pytest.param("00000000", "0", id="all-zero"),
    ],
)
def test_org_code_check_char(body: str, check: str) -> None:
    assert org_code_check_char(body) == check


@pytest.mark.parametrize(
    ("helper", "body"),
    [
        pytest.param(id_card_check_char, "1101051949123100", id="id-16-digits"),
        pytest.param(id_card_check_char, "1101051949123100A", id="id-letter"),
        pytest.param(id_card_check_char, "１１０１０５１９４９１２３１００２", id="id-full-width"),
        pytest.param(uscc_check_char, "91350100M000100Y", id="uscc-16-chars"),
        pytest.param(uscc_check_char, "91350100MO00100Y4", id="uscc-excluded-letter"),
        pytest.param(org_code_check_char, "M000100", id="org-7-chars"),
        pytest.param(org_code_check_char, "m000100y", id="org-lowercase"),
    ],
)
def test_check_char_helpers_reject_bad_bodies(helper: Callable[[str], str], body: str) -> None:
    with pytest.raises(InvalidKey, match="check character needs exactly"):
        helper(body)


@pytest.mark.parametrize(
    ("raw15", "id18"),
    [
        pytest.param("110105491231002", GB_ID_EXAMPLE, id="gb11643-example"),
        pytest.param("440524800101001", "440524198001010013", id="other"),
    ],
)
def test_id15_to_id18(raw15: str, id18: str) -> None:
    assert id15_to_id18(raw15) == id18


@pytest.mark.parametrize(
    ("raw15", "rule"),
    [
        pytest.param("11010549123100", "must be 15 characters, got 14", id="too-short"),
        pytest.param("11010549123100X", "character 'X' at position 15", id="check-char"),
    ],
)
def test_id15_to_id18_rejects_bad_input(raw15: str, rule: str) -> None:
    with pytest.raises(InvalidKey, match=rule):
        id15_to_id18(raw15)


# --- SubjectKey ----------------------------------------------------------------------------


def test_uscc_is_related_to_its_embedded_org_code() -> None:
    key = parse_key(KeyKind.USCC, GB_USCC_EXAMPLE)

    assert key.related() == (SubjectKey(KeyKind.ORG_CODE, "M000100Y-4"),)
    assert key.related()[0] == parse_key(KeyKind.ORG_CODE, "M000100Y4")


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        pytest.param(KeyKind.ID_CARD, GB_ID_EXAMPLE, id="id"),
        pytest.param(KeyKind.ORG_CODE, "M000100Y-4", id="org"),
        pytest.param(KeyKind.REAL_ESTATE_UNIT, "320102001001GB00001F00010001", id="unit"),
        pytest.param(KeyKind.LAND_CERT, "佛禅国用(2012)第1200668号", id="land"),
    ],
)
def test_other_kinds_have_no_related_keys(kind: KeyKind, raw: str) -> None:
    assert parse_key(kind, raw, today=TODAY).related() == ()


MASKED = [
    pytest.param(KeyKind.ID_CARD, "11010119900307002X", "110101********002X", id="id-spec-form"),
    pytest.param(KeyKind.ID_CARD, GB_ID_EXAMPLE_1880, "440524********0014", id="id-1880"),
    pytest.param(KeyKind.USCC, GB_USCC_EXAMPLE, "91350100********43", id="uscc"),
    pytest.param(KeyKind.ORG_CODE, "M000100Y4", "M0******-4", id="org"),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "苏(2017)南京市不动产权第0012345号",
        "苏(2017)南京市不动产权第*****45号",
        id="cert",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_CERT,
        "京(2019)朝阳区不动产证明第123号",
        "京(2019)朝阳区不动产证明第**3号",
        id="cert-short-number-shows-less",
    ),
    pytest.param(
        KeyKind.REAL_ESTATE_UNIT,
        "320102001001GB00001F00010001",
        "320102001001**************01",
        id="unit",
    ),
    pytest.param(
        KeyKind.LAND_CERT, "佛禅国用(2012)第1200668号", "佛禅国用(2012)第*****68号", id="land"
    ),
    pytest.param(KeyKind.LAND_CERT, "某集建(2010)4567", "某集建(2010)**67", id="land-without-di"),
    pytest.param(
        KeyKind.LAND_CERT, "鹤国用(2014)第GN00285号", "鹤国用(2014)第GN***85号", id="land-lettered"
    ),
]


@pytest.mark.parametrize(("kind", "raw", "masked"), MASKED)
def test_masked(kind: KeyKind, raw: str, masked: str) -> None:
    key = parse_key(kind, raw, today=TODAY)

    assert key.masked() == masked
    assert len(key.masked()) == len(key.value)


@pytest.mark.parametrize(("kind", "raw", "masked"), MASKED)
def test_str_and_repr_show_only_the_masked_form(kind: KeyKind, raw: str, masked: str) -> None:
    key = parse_key(kind, raw, today=TODAY)

    assert str(key) == masked
    assert f"{key}" == masked
    assert masked in repr(key)
    assert key.value not in repr(key)
    assert key.value not in f"{key!r} {[key]} { ({'subject': key}) }"


@pytest.mark.parametrize("kind", list(KeyKind), ids=str)
@pytest.mark.parametrize("value", ["", "x", "abcdef", "苏(2017)", "1" * 40], ids=repr)
def test_masking_a_hand_built_key_never_raises(kind: KeyKind, value: str) -> None:
    masked = SubjectKey(kind, value).masked()

    assert len(masked) == len(value)
    if len(value) > 4:
        assert masked != value


def test_subject_key_is_hashable_and_compared_by_value() -> None:
    first = parse_key(KeyKind.ID_CARD, "11010519491231002x")
    second = parse_key("ID_CARD", "110105491231002")

    assert first == second
    assert len({first, second}) == 1


# --- mask_identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f"申请人身份证号{GB_ID_EXAMPLE}，单位统一社会信用代码{GB_USCC_EXAMPLE}。",
            "申请人身份证号110105********002X，单位统一社会信用代码91350100********43。",
            id="id-and-uscc-in-chinese",
        ),
        pytest.param(
            f"lookup subject={GB_ID_EXAMPLE} org={GB_USCC_EXAMPLE} ok",
            "lookup subject=110105********002X org=91350100********43 ok",
            id="id-and-uscc-in-english",
        ),
        pytest.param(
            "issued 1.2.156.3005.2.11100000000013338W001.11320100MB1111116K"
            ".Z9LN07ZQQGPEYF3H.001.B to 11010519491231002X",
            "issued 1.2.156.3005.2.11100000000013338W001.11320100********6K"
            ".Z9************3H.001.B to 110105********002X",
            id="certificate-id-issuer-and-serial",
        ),
        pytest.param(
            "id 11010519491231002x done",
            "id 110105********002X done",
            id="id-lowercase-x",
        ),
        pytest.param(
            "id 110105 19491231 002X done",
            "id 110105********002X done",
            id="id-in-groups",
        ),
        pytest.param(
            "id 110105-19491231-002X done",
            "id 110105********002X done",
            id="id-in-hyphenated-groups",
        ),
        pytest.param("old id 110105491231002.", "old id 110105******002.", id="id-15-digit"),
        pytest.param(
            "ID11010519491231002Xabc", "ID110105********002Xabc", id="id-glued-to-letters"
        ),
        pytest.param(
            "１１０１０５１９４９１２３１００２Ｘ", "110105********002X", id="id-full-width"
        ),
        pytest.param(
            "wrong check 110105194912310023",
            "wrong check 110105********0023",
            id="mistyped-id-still-masked",
        ),
        pytest.param("uscc 91350100m000100y43", "uscc 91350100********43", id="uscc-lowercase"),
        pytest.param(
            "证书苏(2017)南京市不动产权第0012345号已核验",
            "证书苏(2017)南京市不动产权第*****45号已核验",
            id="real-estate-cert",
        ),
        pytest.param(
            "证明 浙（2020）杭州市不动产证明第 0098765 号",
            "证明 浙（2020）杭州市不动产证明第 *****65 号",
            id="real-estate-proof-full-width",
        ),
        pytest.param(
            "土地证佛禅国用(2012)第1200668号",
            "土地证佛禅国用(2012)第*****68号",
            id="land-cert",
        ),
        pytest.param(
            "抵押物 鹤国用（2014）第GN00285号、衡国用（2006B）第3051333号",
            "抵押物 鹤国用（2014）第GN***85号、衡国用（2006B）第*****33号",
            id="land-cert-real-variants",
        ),
        pytest.param(
            "unit=320102001001GB00001F00010001;",
            "unit=320102001001**************01;",
            id="real-estate-unit",
        ),
        pytest.param(
            "phone 13800138000 amount 1234567890123456 at 2025-06-30",
            "phone 13800138000 amount 1234567890123456 at 2025-06-30",
            id="other-numbers-untouched",
        ),
        pytest.param(
            "trace 4bf92f3577b34da6a3ce929d0e0e4736 key M000100Y-4",
            "trace 4bf92f3577b34da6a3ce929d0e0e4736 key M000100Y-4",
            id="hex-and-org-code-untouched",
        ),
        pytest.param("", "", id="empty"),
    ],
)
def test_mask_identifiers(text: str, expected: str) -> None:
    assert mask_identifiers(text) == expected


def test_mask_identifiers_masks_every_occurrence() -> None:
    text = f"{GB_ID_EXAMPLE},{GB_ID_EXAMPLE_1880};{GB_USCC_EXAMPLE}"

    masked = mask_identifiers(text)

    for identifier in (GB_ID_EXAMPLE, GB_ID_EXAMPLE_1880, GB_USCC_EXAMPLE):
        assert identifier not in masked
    assert masked == "110105********002X,440524********0014;91350100********43"


def test_mask_identifiers_is_idempotent() -> None:
    text = f"{GB_ID_EXAMPLE} {GB_USCC_EXAMPLE} 苏(2017)南京市不动产权第0012345号"

    once = mask_identifiers(text)

    assert mask_identifiers(once) == once
