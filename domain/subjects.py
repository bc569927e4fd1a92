"""Subject keys: the typed identifiers a lookup names its subject by.

A key is normalized (`normalize`) and then validated for its kind (`parse_key`) before
any adapter sees it. The rules are those of SPEC.md, "Subject keys":

- ``ID_CARD``: resident identity number, GB 11643-1999 (the 15-digit GB 11643-1989 form
  is converted to 18 digits);
- ``USCC``: unified social credit code, GB 32100-2015;
- ``ORG_CODE``: organization code, GB 11714-1997, written ``XXXXXXXX-C``;
- ``REAL_ESTATE_CERT``: real-estate certificate number, ``苏(2017)南京市不动产权第0012345号``;
- ``REAL_ESTATE_UNIT``: real-estate unit number, GB/T 37346-2019;
- ``LAND_CERT``: pre-2015 land-use certificate number, ``佛禅国用(2012)第1200668号``.

Every failure is an `InvalidKey` naming the kind and the rule broken; no other exception
leaves this module. Messages never repeat a whole identifier, so they are safe to log.
`SubjectKey` prints masked (``110101********002X``), and `mask_identifiers` masks
identifiers inside free text for the log processor. The module is pure: no I/O.
"""

from __future__ import annotations

import datetime
import enum
import operator
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from domain.errors import InvalidKey

__all__ = [
    "MAX_RAW_LENGTH",
    "KeyKind",
    "SubjectKey",
    "id15_to_id18",
    "id_card_check_char",
    "mask_identifiers",
    "normalize",
    "org_code_check_char",
    "parse_key",
    "uscc_check_char",
]

MAX_RAW_LENGTH: Final = 128
"""Longest raw key `parse_key` looks at; longer input is rejected before normalization."""


class KeyKind(enum.StrEnum):
    """The kinds of key that name a subject (``tongban.v1.KeyKind`` without its prefix)."""

    ID_CARD = "ID_CARD"
    USCC = "USCC"
    ORG_CODE = "ORG_CODE"
    REAL_ESTATE_CERT = "REAL_ESTATE_CERT"
    REAL_ESTATE_UNIT = "REAL_ESTATE_UNIT"
    LAND_CERT = "LAND_CERT"


# --- normalization -----------------------------------------------------------------------

_NORMALIZE_TABLE: Final = str.maketrans(
    {
        # NFKC already maps （）﹙﹚ to () and ［］ to []; these have no compatibility mapping.
        "〔": "(",
        "〕": ")",
        "【": "(",
        "】": ")",
        "〖": "(",
        "〗": ")",
        "[": "(",
        "]": ")",
        **dict(zip(string.ascii_lowercase, string.ascii_uppercase, strict=True)),
    }
)


def normalize(raw: str) -> str:
    """Return the canonical spelling of a raw key, without validating it.

    Applies NFKC (full-width digits, letters and brackets become half-width), unifies
    brackets (〔〕【】〖〗[] become ``()``), removes all whitespace, including the
    ideographic space U+3000, and invisible format characters such as U+200B and U+FEFF,
    and upper-cases Latin letters. Other scripts are left as they are.
    """
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(text.split())
    if not text.isascii():
        # Zero-width spaces, BOMs and direction marks (category Cf) survive copy-paste.
        text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return text.translate(_NORMALIZE_TABLE)


# --- check characters ----------------------------------------------------------------------

_DIGITS: Final = frozenset(string.digits)

# GB 11643-1999: ISO 7064 MOD 11-2, weights 2^(18-i) mod 11 for positions 1..17.
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_BY_REMAINDER: Final = "10X98765432"
_ID_CHECK_CHARS: Final = frozenset("0123456789X")

# GB 32100-2015: the code alphabet excludes I, O, S, V, Z; a character's value is
# its index here.
_USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES: Final = {char: value for value, char in enumerate(_USCC_ALPHABET)}
_USCC_EXCLUDED: Final = frozenset("IOSVZ")
# GB 32100-2015: weights 3^(i-1) mod 31.
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 32100-2015: registration authority codes as Tongban accepts them (SPEC.md).
_USCC_AUTHORITIES: Final = frozenset("123456789ANY")

# GB 11714-1997: body characters 0-9, A-Z valued 0..35.
_ORG_BODY_CHARS: Final = frozenset(string.digits + string.ascii_uppercase)
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)


def id_card_check_char(body17: str) -> str:
    """Return the GB 11643-1999 check character (ISO 7064 MOD 11-2) for 17 digits.

    Raises:
        InvalidKey: `body17` is not exactly 17 ASCII digits.
    """
    if len(body17) != 17 or not _DIGITS.issuperset(body17):
        raise InvalidKey(KeyKind.ID_CARD, "check character needs exactly 17 digits")
    total = sum(map(operator.mul, map(int, body17), _ID_WEIGHTS))
    return _ID_CHECK_BY_REMAINDER[total % 11]


def uscc_check_char(body17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters of a USCC.

    Only the alphabet is checked here, not the structure of the code.

    Raises:
        InvalidKey: `body17` is not 17 characters of ``0123456789ABCDEFGHJKLMNPQRTUWXY``.
    """
    if len(body17) != 17 or not all(char in _USCC_VALUES for char in body17):
        raise InvalidKey(
            KeyKind.USCC,
            "check character needs exactly 17 characters of 0123456789ABCDEFGHJKLMNPQRTUWXY",
        )
    total = sum(
        _USCC_VALUES[char] * weight for char, weight in zip(body17, _USCC_WEIGHTS, strict=True)
    )
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(body8: str) -> str:
    """Return the GB 11714-1997 check character for the 8 body characters of an org code.

    ``C = 11 - (sum mod 11)``; 10 is written ``X`` and 11 is written ``0``.

    Raises:
        InvalidKey: `body8` is not 8 characters of 0-9 and upper-case A-Z.
    """
    if len(body8) != 8 or not _ORG_BODY_CHARS.issuperset(body8):
        raise InvalidKey(
            KeyKind.ORG_CODE, "check character needs exactly 8 characters of 0-9 and A-Z"
        )
    total = sum(int(char, 36) * weight for char, weight in zip(body8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


# --- ID_CARD -------------------------------------------------------------------------------

# GB/T 2260 province-level codes; 81/82/83 are the Hong Kong, Macao and Taiwan residence
# permits (810000/820000/830000).
_PROVINCE_CODES: Final = frozenset(
    f"{code}"
    for code in (
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        71,
        81,
        82,
        83,
    )
)
_PROVINCE_CODES_TEXT: Final = "11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81-83"
# The standard's own example 440524188001010014 is born in 1880.
_EARLIEST_BIRTH: Final = datetime.date(1800, 1, 1)


def id15_to_id18(raw15: str) -> str:
    """Convert a 15-digit GB 11643-1989 identity number to the 18-character form.

    The 1989 form is 6 division digits, a YYMMDD birth date in the 1900s and a 3-digit
    sequence; the 18-character form inserts the century ``19`` and appends the check
    character. The birth date is not validated here; `parse_key` does that.

    Raises:
        InvalidKey: `raw15` is not exactly 15 ASCII digits.
    """
    if len(raw15) != 15:
        raise InvalidKey(
            KeyKind.ID_CARD,
            f"the 15-digit form (GB 11643-1989) must be 15 characters, got {len(raw15)}",
        )
    for position, char in enumerate(raw15, start=1):
        if char not in _DIGITS:
            raise InvalidKey(
                KeyKind.ID_CARD,
                f"character {char!r} at position {position} must be a digit "
                "(the 15-digit GB 11643-1989 form has no check character)",
            )
    body17 = f"{raw15[:6]}19{raw15[6:]}"
    return body17 + id_card_check_char(body17)


def _parse_id_card(value: str, today: datetime.date) -> str:
    kind = KeyKind.ID_CARD
    if len(value) == 15:
        value = id15_to_id18(value)
    elif len(value) != 18:
        raise InvalidKey(
            kind,
            f"must be 18 characters (or 15 for the GB 11643-1989 form), got {len(value)}",
        )
    if not _DIGITS.issuperset(value[:17]):
        for position, char in enumerate(value[:17], start=1):
            if char not in _DIGITS:
                raise InvalidKey(kind, f"character {char!r} at position {position} must be a digit")
    given_check = value[17]
    if given_check not in _ID_CHECK_CHARS:
        raise InvalidKey(
            kind, f"check character (position 18) must be a digit or 'X', got {given_check!r}"
        )
    # Division codes are household-registration codes: only the province level is checked,
    # never whether the county existed in the birth year. 9 starts a foreign permanent
    # residence ID (2023 form).
    if value[0] != "9" and value[:2] not in _PROVINCE_CODES:
        raise InvalidKey(
            kind,
            f"division code {value[:6]} must start with a province-level code "
            f"({_PROVINCE_CODES_TEXT}) or with 9",
        )
    # GB 11643-1999: birth date YYYYMMDD at positions 7-14.
    birth = value[6:14]
    try:
        born = datetime.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    except ValueError:
        raise InvalidKey(kind, f"birth date {birth} is not a real date") from None
    if born < _EARLIEST_BIRTH:
        raise InvalidKey(kind, f"birth date {birth} is before 1800-01-01")
    if born > today:
        raise InvalidKey(kind, f"birth date {birth} is in the future")
    expected = id_card_check_char(value[:17])
    if given_check != expected:
        raise InvalidKey(
            kind,
            f"check character must be {expected!r} (ISO 7064 MOD 11-2), got {given_check!r}",
        )
    return value


# --- USCC ----------------------------------------------------------------------------------


def _parse_uscc(value: str, today: datetime.date) -> str:
    kind = KeyKind.USCC
    if len(value) != 18:
        raise InvalidKey(kind, f"must be 18 characters, got {len(value)}")
    for position, char in enumerate(value, start=1):
        if char in _USCC_VALUES:
            continue
        if char in _USCC_EXCLUDED:
            raise InvalidKey(
                kind,
                f"character {char!r} at position {position} is not allowed in a USCC "
                "(GB 32100-2015 excludes I, O, S, V, Z)",
            )
        raise InvalidKey(
            kind,
            f"character {char!r} at position {position} is not allowed in a USCC "
            "(only digits and upper-case letters other than I, O, S, V, Z)",
        )
    if value[0] not in _USCC_AUTHORITIES:
        raise InvalidKey(
            kind,
            "registration authority code (position 1) must be one of 1-9, A, N, Y, "
            f"got {value[0]!r}",
        )
    # GB 32100-2015: positions 3-8 are the GB/T 2260 division code.
    for position, char in enumerate(value[2:8], start=3):
        if char not in _DIGITS:
            raise InvalidKey(
                kind,
                f"division code (positions 3-8) must be digits, got {char!r} at position "
                f"{position}",
            )
    # GB 32100-2015: positions 9-17 are a GB 11714 organization code with its check.
    org_check = value[16]
    expected_org_check = org_code_check_char(value[8:16])
    if org_check != expected_org_check:
        raise InvalidKey(
            kind,
            "embedded organization code (positions 9-17) fails its GB 11714-1997 check: "
            f"check character (position 17) must be {expected_org_check!r}, "
            f"got {org_check!r}",
        )
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        raise InvalidKey(
            kind,
            f"check character must be {expected!r} (GB 32100-2015 MOD 31), got {value[17]!r}",
        )
    return value


# --- ORG_CODE ------------------------------------------------------------------------------


def _parse_org_code(value: str, today: datetime.date) -> str:
    kind = KeyKind.ORG_CODE
    if len(value) == 10 and value[8] == "-":
        compact = value[:8] + value[9]
    elif "-" in value:
        raise InvalidKey(kind, "the hyphen must follow the 8th character (XXXXXXXX-C)")
    else:
        compact = value
    if len(compact) != 9:
        raise InvalidKey(
            kind,
            "must be 8 body characters and a check character (XXXXXXXX-C), "
            f"got {len(compact)} characters",
        )
    for position, char in enumerate(compact[:8], start=1):
        if char not in _ORG_BODY_CHARS:
            raise InvalidKey(
                kind,
                f"character {char!r} at position {position} must be a digit or a letter A-Z",
            )
    expected = org_code_check_char(compact[:8])
    if compact[8] != expected:
        raise InvalidKey(
            kind, f"check character must be {expected!r} (GB 11714-1997), got {compact[8]!r}"
        )
    return f"{compact[:8]}-{compact[8]}"


# --- REAL_ESTATE_CERT and LAND_CERT --------------------------------------------------------

# CJK Unified Ideographs, Extension A and the compatibility block.
_CJK: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PROVINCE_ABBREVIATIONS: Final = (
    "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼港澳台"
)
_CERT_YEAR: Final = re.compile(r"\(([0-9]{4})\)")
_CERT_TAIL: Final = re.compile(rf"([{_CJK}]+?)不动产(?:权|证明)第([0-9]+)号")
_CERT_MARKERS: Final = ("不动产权第", "不动产证明第")
# Land-use certificates were numbered locally: a CJK prefix naming the right
# (国用 state-owned use, 集用/集建 collective use/construction, 集有/集所 collective
# ownership, 他项 other rights), then the year with an optional grant mark such as 出 or
# 划, or a letter (衡国用(2006B)第3051333号), and a serial of digits that some registries
# lead with letters (鹤国用(2014)第GN00285号) or end with one: never without a digit.
_LAND_MARKERS: Final = ("国用", "集用", "集建", "集有", "集所", "他项")
_LAND_CERT: Final = re.compile(
    rf"(?P<prefix>[{_CJK}]{{1,16}})\([0-9]{{4}}(?:[{_CJK}]{{1,3}}|[A-Z]{{1,2}})?\)"
    r"字?第?(?P<number>[A-Z]{0,4}[0-9]+[A-Z]?(?:-[0-9]+)?)号?"
)


def _parse_real_estate_cert(value: str, today: datetime.date) -> str:
    kind = KeyKind.REAL_ESTATE_CERT
    if value[0] not in _PROVINCE_ABBREVIATIONS:
        raise InvalidKey(
            kind,
            "must start with a province abbreviation "
            f"(one of {_PROVINCE_ABBREVIATIONS}), got {value[0]!r}",
        )
    year = _CERT_YEAR.match(value, 1)
    if year is None:
        raise InvalidKey(
            kind, "the province abbreviation must be followed by a 4-digit year in brackets"
        )
    tail = value[year.end() :]
    if _CERT_TAIL.fullmatch(tail) is None:
        raise InvalidKey(kind, _cert_tail_problem(tail))
    return value


def _cert_tail_problem(tail: str) -> str:
    marker_at = max(tail.find(marker) for marker in _CERT_MARKERS)
    if marker_at < 0:
        return "must contain 不动产权第 or 不动产证明第 after the place name"
    place = tail[:marker_at]
    if not place:
        return "must name the registering place between the year and 不动产权/不动产证明"
    if re.fullmatch(f"[{_CJK}]+", place) is None:
        return "the place name must be written in Chinese characters"
    return "must end with the certificate number: digits followed by 号"


def _parse_land_cert(value: str, today: datetime.date) -> str:
    kind = KeyKind.LAND_CERT
    match = _LAND_CERT.fullmatch(value)
    if match is None:
        raise InvalidKey(
            kind,
            "must look like 佛禅国用(2012)第1200668号: Chinese prefix, (year and an "
            "optional grant mark), optional 第, a serial of digits (letters may lead), "
            "optional 号",
        )
    if not any(marker in match["prefix"] for marker in _LAND_MARKERS):
        raise InvalidKey(kind, f"the prefix must name the right: one of {', '.join(_LAND_MARKERS)}")
    return value


# --- REAL_ESTATE_UNIT ----------------------------------------------------------------------

# GB/T 37346-2019: parcel code (6-digit county + 6-digit cadastral zone and subzone,
# ownership G/J/Z, right type, 5-digit parcel number) then the fixture code
# (F building, L forest, Q other, W none; 8 digits).
_UNIT_SEGMENTS: Final = (
    (1, 12, re.compile(r"[0-9]{12}"), "must be digits (county and cadastral zone)"),
    (13, 13, re.compile(r"[GJZ]"), "must be G, J or Z (land ownership)"),
    (14, 14, re.compile(r"[ABCDEFGHSXWY]"), "must be one of A-H, S, X, W, Y (right type)"),
    (15, 19, re.compile(r"[0-9]{5}"), "must be digits (parcel number)"),
    (20, 20, re.compile(r"[FLQW]"), "must be F, L, Q or W (fixture type)"),
    (21, 28, re.compile(r"[0-9]{8}"), "must be digits (fixture number)"),
)
_UNIT_PATTERN: Final = re.compile(r"[0-9]{12}[GJZ][ABCDEFGHSXWY][0-9]{5}[FLQW][0-9]{8}")


def _parse_real_estate_unit(value: str, today: datetime.date) -> str:
    kind = KeyKind.REAL_ESTATE_UNIT
    if len(value) != 28:
        raise InvalidKey(kind, f"must be 28 characters (GB/T 37346-2019), got {len(value)}")
    for first, last, pattern, rule in _UNIT_SEGMENTS:
        if pattern.fullmatch(value, first - 1, last) is None:
            where = f"position {first}" if first == last else f"positions {first}-{last}"
            raise InvalidKey(kind, f"{where} {rule}")
    return value


# --- parse_key -----------------------------------------------------------------------------

_PARSERS: Final[dict[KeyKind, Callable[[str, datetime.date], str]]] = {
    KeyKind.ID_CARD: _parse_id_card,
    KeyKind.USCC: _parse_uscc,
    KeyKind.ORG_CODE: _parse_org_code,
    KeyKind.REAL_ESTATE_CERT: _parse_real_estate_cert,
    KeyKind.REAL_ESTATE_UNIT: _parse_real_estate_unit,
    KeyKind.LAND_CERT: _parse_land_cert,
}


def _resolve_kind(kind: object) -> KeyKind:
    if isinstance(kind, KeyKind):
        return kind
    if isinstance(kind, str) and kind in KeyKind.__members__:
        return KeyKind[kind]
    known = ", ".join(KeyKind)
    if not isinstance(kind, str):
        name = type(kind).__name__
        rule = f"key kind must be a KeyKind or its name, got {name}; known kinds: {known}"
        raise InvalidKey(name, rule, field="subject.kind")
    shown = kind if len(kind) <= 40 else kind[:40] + "..."
    raise InvalidKey(
        shown, f"unknown key kind {shown!r}; known kinds: {known}", field="subject.kind"
    )


def parse_key(kind: KeyKind | str, raw: str, *, today: datetime.date | None = None) -> SubjectKey:
    """Normalize and validate `raw` as a key of `kind`.

    `kind` is a `KeyKind` or its name (``"ID_CARD"``). `today` bounds ID-card birth dates
    (default: ``datetime.date.today()``). The returned key holds the normalized value: an
    18-character ID number (15-digit input is converted), ``XXXXXXXX-C`` for an org code.

    Raises:
        InvalidKey: the kind is unknown, or the value is empty, longer than
            `MAX_RAW_LENGTH`, or breaks a rule of its kind; the message names the rule.
    """
    key_kind = _resolve_kind(kind)
    if not isinstance(raw, str):
        raise InvalidKey(key_kind, f"must be a string, got {type(raw).__name__}")
    if len(raw) > MAX_RAW_LENGTH:
        raise InvalidKey(key_kind, f"must be at most {MAX_RAW_LENGTH} characters, got {len(raw)}")
    value = normalize(raw)
    if not value:
        raise InvalidKey(key_kind, "must not be empty")
    parsed = _PARSERS[key_kind](value, datetime.date.today() if today is None else today)
    return SubjectKey(key_kind, parsed)


# --- masking -------------------------------------------------------------------------------


def _mask_generic(value: str) -> str:
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def _mask_number(number: str) -> str:
    # Keep the last 2 characters, but never show more than half of a short number.
    visible = min(2, len(number) // 2)
    return "*" * (len(number) - visible) + number[len(number) - visible :]


def _mask_id_card(value: str) -> str:
    if len(value) == 18:
        return value[:6] + "*" * 8 + value[14:]
    if len(value) == 15:
        return value[:6] + "*" * 6 + value[12:]
    return _mask_generic(value)


def _mask_uscc(value: str) -> str:
    if len(value) == 18:
        return value[:8] + "*" * 8 + value[16:]
    return _mask_generic(value)


def _mask_org_code(value: str) -> str:
    if len(value) == 10 and value[8] == "-":
        return value[:2] + "*" * 6 + value[8:]
    return _mask_generic(value)


def _mask_real_estate_unit(value: str) -> str:
    if len(value) == 28:
        return value[:12] + "*" * 14 + value[26:]
    return _mask_generic(value)


# Head through the last ")" and any characters up to the number (…不动产权第, 字第), the
# number, and what follows it (号).
_CERT_NUMBER_PARTS: Final = re.compile(r"(.*\)[^0-9]*)([0-9][0-9-]*)([^0-9]*)")


def _mask_certificate(value: str) -> str:
    parts = _CERT_NUMBER_PARTS.fullmatch(value)
    if parts is None:
        return _mask_generic(value)
    head, number, tail = parts.groups()
    return head + _mask_number(number) + tail


_MASKERS: Final[dict[KeyKind, Callable[[str], str]]] = {
    KeyKind.ID_CARD: _mask_id_card,
    KeyKind.USCC: _mask_uscc,
    KeyKind.ORG_CODE: _mask_org_code,
    KeyKind.REAL_ESTATE_CERT: _mask_certificate,
    KeyKind.REAL_ESTATE_UNIT: _mask_real_estate_unit,
    KeyKind.LAND_CERT: _mask_certificate,
}


@dataclass(frozen=True, slots=True, repr=False)
class SubjectKey:
    """A validated, normalized subject key. Build one with `parse_key`.

    `value` is the plain normalized value. `str()` and `repr()` show the masked form so
    that a key that ends up in a log never leaks the identifier.
    """

    kind: KeyKind
    value: str

    def masked(self) -> str:
        """Return the value with its identifying part replaced by ``*``.

        ID_CARD ``110101********002X``; USCC first 8 and last 2 visible; ORG_CODE first 2
        and the check visible (``M0******-4``); certificates keep everything up to the
        number and its last 2 digits; REAL_ESTATE_UNIT first 12 and last 2 visible.
        """
        return _MASKERS[self.kind](self.value)

    def related(self) -> tuple[SubjectKey, ...]:
        """Return other keys that name the same subject.

        A USCC yields the organization code it embeds (positions 9-17, GB 32100-2015),
        written ``XXXXXXXX-C``; other kinds yield nothing.
        """
        if self.kind is KeyKind.USCC and len(self.value) == 18:
            return (SubjectKey(KeyKind.ORG_CODE, f"{self.value[8:16]}-{self.value[16]}"),)
        return ()

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"SubjectKey(kind={self.kind.value}, masked={self.masked()!r})"


# --- masking inside free text --------------------------------------------------------------

_TEXT_DIGIT: Final = "0-9\uff10-\uff19"
_TEXT_ALNUM: Final = "0-9A-Za-z\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"
_TEXT_ID_CHECK: Final = "0-9\uff10-\uff19Xx\uff38\uff58"
_TEXT_SEPARATOR: Final = " \u00a0\u3000-"
_TEXT_SPACE: Final = " \u00a0\u3000"
_TEXT_OPEN: Final = r"(（〔【［\["
_TEXT_CLOSE: Final = r")）〕】］\]"

_TEXT_IDENTIFIERS: Final = re.compile(
    # E-certificate ids (GB/T 36904 shape): the issuer's USCC and the serial are masked.
    rf"(?<![{_TEXT_ALNUM}.])(?P<cid_head>1\.2\.156\.3005\.2\.[0-9A-Za-z]+\.)"
    rf"(?P<cid_issuer>[{_TEXT_ALNUM}]+)\.(?P<cid_serial>[{_TEXT_ALNUM}]+)"
    rf"(?P<cid_tail>\.[0-9]{{3}}\.[0-9A-Za-z])(?![{_TEXT_ALNUM}])|"
    # Real-estate certificate numbers: the digits after 不动产权第 / 不动产证明第.
    rf"(?P<cert_head>不动产(?:权|证明)[{_TEXT_SPACE}]*第[{_TEXT_SPACE}]*)"
    rf"(?P<cert_number>[{_TEXT_DIGIT}]+)"
    # Land-use certificate numbers: the digits after 国用(2012)第 and the like.
    rf"|(?P<land_head>(?:{'|'.join(_LAND_MARKERS)})[{_TEXT_SPACE}]*[{_TEXT_OPEN}]"
    rf"[{_TEXT_SPACE}]*[{_TEXT_DIGIT}]{{4}}(?:[{_CJK}]{{1,3}}|[A-Za-z]{{1,2}})?"
    rf"[{_TEXT_SPACE}]*[{_TEXT_CLOSE}][{_TEXT_SPACE}]*字?第?[{_TEXT_SPACE}]*[A-Za-z]{{0,4}})"
    rf"(?P<land_number>[{_TEXT_DIGIT}]+)"
    # ID numbers written in groups: 110105 19491231 002X.
    rf"|(?<![{_TEXT_DIGIT}])(?P<spaced_id>[{_TEXT_DIGIT}]{{6}}"
    rf"(?:[{_TEXT_SEPARATOR}][{_TEXT_DIGIT}]{{8}}[{_TEXT_SEPARATOR}]?"
    rf"|[{_TEXT_DIGIT}]{{8}}[{_TEXT_SEPARATOR}])"
    rf"[{_TEXT_DIGIT}]{{3}}[{_TEXT_ID_CHECK}])(?![{_TEXT_DIGIT}])"
    # Any other run of Latin letters and digits: judged whole by `_mask_token`.
    rf"|(?<![{_TEXT_ALNUM}])(?P<token>[{_TEXT_ALNUM}]+)"
)
# ID numbers glued to letters (``ID11010519491231002X``): bounded by non-digits only.
_TEXT_EMBEDDED_ID: Final = re.compile(
    rf"(?<![{_TEXT_DIGIT}])(?:[{_TEXT_DIGIT}]{{17}}[{_TEXT_ID_CHECK}]|[{_TEXT_DIGIT}]{{15}})"
    rf"(?![{_TEXT_DIGIT}])"
)
_ID18_SHAPE: Final = re.compile(r"[0-9]{17}[0-9X]")
_USCC_SHAPE: Final = re.compile(
    rf"[{''.join(sorted(_USCC_AUTHORITIES))}][{_USCC_ALPHABET}][0-9]{{6}}[{_USCC_ALPHABET}]{{10}}"
)


def _is_valid(kind: KeyKind, value: str) -> bool:
    try:
        _PARSERS[kind](value, datetime.date.max)
    except InvalidKey:
        return False
    return True


def _mask_token(token: str) -> str:
    """Mask a whole run of letters and digits, or the ID numbers inside it."""
    value = normalize(token)
    if len(value) == 18 and _ID18_SHAPE.fullmatch(value):
        # An all-digit USCC is masked as a USCC only when it cannot be an ID number.
        if _is_valid(KeyKind.USCC, value) and not _is_valid(KeyKind.ID_CARD, value):
            return _mask_uscc(value)
        return _mask_id_card(value)
    if len(value) == 18 and _USCC_SHAPE.fullmatch(value):
        return _mask_uscc(value)
    if len(value) == 28 and _UNIT_PATTERN.fullmatch(value):
        return _mask_real_estate_unit(value)
    return _TEXT_EMBEDDED_ID.sub(lambda found: _mask_id_card(normalize(found[0])), token)


def _mask_found(found: re.Match[str]) -> str:
    if found["cid_head"] is not None:
        return (
            found["cid_head"]
            + _mask_uscc(normalize(found["cid_issuer"]))
            + "."
            + _mask_generic(found["cid_serial"])
            + found["cid_tail"]
        )
    if found["cert_number"] is not None:
        return found["cert_head"] + _mask_number(found["cert_number"])
    if found["land_number"] is not None:
        return found["land_head"] + _mask_number(found["land_number"])
    if found["spaced_id"] is not None:
        return _mask_id_card(normalize(found["spaced_id"]).replace("-", ""))
    return _mask_token(found["token"])


def mask_identifiers(text: str) -> str:
    """Mask the identifiers found in free text, for logs.

    Masks ID numbers (18 characters, also with a lower-case ``x``, also written in
    6-8-4 groups, and the 15-digit form), USCCs, real-estate unit numbers, and the number
    part of real-estate and land-use certificate numbers, and the issuer and serial of
    e-certificate ids (``1.2.156.3005.2.T.11320100********6K.Z9************3H.001.B``).
    Matching is by shape, not by check character, so a mistyped ID number is masked too;
    anything else that looks like an ID number (18 or 15 digits standing alone) is masked
    as well.
    """
    return _TEXT_IDENTIFIERS.sub(_mask_found, text)
