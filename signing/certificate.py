"""Electronic certificate content, its JWS claims, and its GB/T 36904-shape identifier.

Identifier: `1.2.156.3005.2.<type code>.<issuer USCC>.<serial>.<version>.<check>`, with
the version as three digits and the check character computed by ISO/IEC 7064
MOD 37,36 over type code + issuer USCC + serial + version.

Claims (the JWS payload, RFC 8785 canonical JSON) are the dataclass members by name;
the optional ones (`valid_until`, `predecessor`, `status_list_uri`, `exp`) are omitted
when unset::

    {"id": "1.2.156.3005.2.<type>.<USCC>.<serial>.001.<check>",
     "type_code": "...", "type_name": "营业执照",
     "holder_kind": "USCC", "holder_value": "...",
     "issuer_department": "...", "issuer_uscc": "...",
     "version": 1, "predecessor": "1.2.156.3005.2...",
     "issued_at": "2025-01-31T08:00:00Z", "valid_from": "...", "valid_until": "...",
     "fields": {...},
     "status_list_index": 42, "status_list_uri": "https://...",
     "iat": 1738310400, "nbf": ..., "exp": ...}

`iat`/`nbf`/`exp` (RFC 7519 §4.1) repeat `issued_at`/`valid_from`/`valid_until` as
NumericDate so stock JOSE tools apply the validity window too; they must agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple, NoReturn

from domain.errors import InvalidRequest
from signing.canonical import JSONObject, JSONValue, canonicalize
from signing.jws import TYP_CERTIFICATE, sign_compact
from signing.keys import SigningKey
from signing.timestamps import RFC3339_UTC, format_rfc3339, parse_rfc3339, to_utc_second

CERTIFICATE_ID_PREFIX = "1.2.156.3005.2"
_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# ISO/IEC 7064 §7 hybrid system with M = 36: P1 = M; S_j = ||P_j + a_j||_M (0 → M);
# P_j+1 = 2·S_j mod (M + 1); the check a makes P_n+1 + a ≡ 1 (mod M).
# _STEP[P][a] is P_j+1, tabulated once.
_STEP = tuple(
    {c: ((p + v) % 36 or 36) * 2 % 37 for v, c in enumerate(_ALPHANUMERIC)} for p in range(37)
)
_TYPE_CODE = re.compile(r"[0-9A-Z]{1,64}", re.ASCII)
# GB 32100-2015 §4.1: the USCC alphabet has no I, O, S, V, Z.
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NP-RTUW-Y]{18}", re.ASCII)
_SERIAL = re.compile(r"[0-9A-Z]{1,64}", re.ASCII)
_ID = re.compile(
    r"1\.2\.156\.3005\.2\.([0-9A-Z]{1,64})\.([0-9A-HJ-NP-RTUW-Y]{18})"
    r"\.([0-9A-Z]{1,64})\.(\d{3})\.([0-9A-Z])",
    re.ASCII,
)
_HOLDER_KIND = re.compile(r"[A-Z][A-Z0-9_]{0,31}", re.ASCII)
MAX_VERSION = 999


def iso7064_mod37_36(data: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character for `data` (digits and A-Z only).

    Raises:
        InvalidRequest: `data` holds a character outside 0-9A-Z.
    """
    return _ALPHANUMERIC[(1 - _run_mod37_36(36, data)) % 36]


def _run_mod37_36(p: int, data: str) -> int:
    try:
        for ch in data:
            p = _STEP[p][ch]
    except KeyError as exc:
        raise InvalidRequest("certificate_id", f"character {exc.args[0]!r} is not 0-9A-Z") from None
    return p


# The state after type code + issuer USCC is shared by every certificate of that type
# from that issuer; only the serial and version are new per certificate.
@lru_cache(maxsize=4096)
def _state_after_type_and_issuer(type_and_issuer: str) -> int:
    return _run_mod37_36(36, type_and_issuer)


class FrozenFields(dict[str, JSONValue]):
    """A read-only copy of a certificate's data fields.

    A `dict` (so JSON encoders and equality work at C speed) whose mutating methods
    raise `TypeError`. Pickles and deep-copies; nested JSON values are not copied.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("certificate fields are read-only")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __reduce__(self) -> tuple[type[FrozenFields], tuple[dict[str, JSONValue]]]:
        return (FrozenFields, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenFields({dict.__repr__(self)})"


class CertificateId(NamedTuple):
    """The parts of a certificate identifier."""

    type_code: str
    issuer_uscc: str
    serial: str
    version: int
    check: str


def certificate_id(type_code: str, issuer_uscc: str, serial: str, version: int) -> str:
    """Build `1.2.156.3005.2.<type>.<USCC>.<serial>.<version:03>.<check>`.

    Raises:
        InvalidRequest: a part has the wrong shape (`type_code` and `serial`: 1-64 of
            0-9A-Z; `issuer_uscc`: 18 characters of the USCC alphabet; `version`:
            1-999). The USCC's own check digit is the subject-key validator's job.
    """
    if not isinstance(type_code, str) or not _TYPE_CODE.fullmatch(type_code):
        raise InvalidRequest("type_code", "must be 1-64 characters of 0-9A-Z")
    if not isinstance(issuer_uscc, str) or not _USCC_SHAPE.fullmatch(issuer_uscc):
        raise InvalidRequest("issuer_uscc", "must be 18 characters of the USCC alphabet")
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise InvalidRequest("serial", "must be 1-64 characters of 0-9A-Z")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise InvalidRequest("version", f"must be an integer from 1 to {MAX_VERSION}")
    body = f"{type_code}{issuer_uscc}{serial}{version:03d}"
    check = iso7064_mod37_36(body)
    return f"{CERTIFICATE_ID_PREFIX}.{type_code}.{issuer_uscc}.{serial}.{version:03d}.{check}"


def parse_certificate_id(text: str, field: str = "certificate_id") -> CertificateId:
    """Split and validate a certificate identifier, including its check character.

    Raises:
        InvalidRequest: (`field`, rule) when the shape or the check character is wrong.
    """
    return CertificateId(*_split_certificate_id(text, field))


def _split_certificate_id(text: str, field: str) -> tuple[str, str, str, int, str]:
    match = _ID.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequest(
            field, "must look like 1.2.156.3005.2.<type>.<issuer USCC>.<serial>.<NNN>.<check>"
        )
    type_code, issuer_uscc, serial, version_text, check = match.groups()
    version = int(version_text)
    if version == 0:
        raise InvalidRequest(field, "version must be 001 or more")
    state = _state_after_type_and_issuer(type_code + issuer_uscc)
    expected = _ALPHANUMERIC[(1 - _run_mod37_36(state, serial + version_text)) % 36]
    if check != expected:
        raise InvalidRequest(field, f"check character is {check!r}, expected {expected!r}")
    return type_code, issuer_uscc, serial, version, check


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """What a certificate says. Immutable; times are UTC, kept to the second.

    `fields` is copied into a read-only `FrozenFields` (nested JSON values are not copied).
    Construction validates every member and that the identifier agrees with
    `type_code`, `issuer_uscc` and `version`.

    Raises (on construction):
        InvalidRequest: a member breaks its rule; `field` names the member.
    """

    id: str
    type_code: str
    type_name: str
    holder_kind: str
    holder_value: str
    issuer_department: str
    issuer_uscc: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime | None = None
    version: int
    predecessor: str | None = None
    fields: Mapping[str, JSONValue] = field(default_factory=dict, hash=False)
    status_list_index: int
    status_list_uri: str | None = None

    def __post_init__(self) -> None:
        # Kept lean: the verifier builds one Certificate per token.
        type_code, issuer_uscc, _, version, _ = _split_certificate_id(self.id, "id")
        if type_code != self.type_code:
            raise InvalidRequest("type_code", f"{self.type_code!r} disagrees with the id")
        if issuer_uscc != self.issuer_uscc:
            raise InvalidRequest("issuer_uscc", f"{self.issuer_uscc!r} disagrees with the id")
        if version != self.version or type(self.version) is not int:
            raise InvalidRequest("version", f"{self.version!r} disagrees with the id")
        _require_text(self.type_name, "type_name")
        _require_text(self.holder_value, "holder_value")
        _require_text(self.issuer_department, "issuer_department")
        if not isinstance(self.holder_kind, str) or not _HOLDER_KIND.fullmatch(self.holder_kind):
            raise InvalidRequest("holder_kind", "must be a subject key kind such as ID_CARD")
        set_ = object.__setattr__
        # Parsed claims are UTC whole seconds already; other input is normalized.
        issued_at, valid_from, valid_until = self.issued_at, self.valid_from, self.valid_until
        if type(issued_at) is not datetime or issued_at.tzinfo is not UTC or issued_at.microsecond:
            set_(self, "issued_at", to_utc_second(issued_at, "issued_at"))
        if (
            type(valid_from) is not datetime
            or valid_from.tzinfo is not UTC
            or valid_from.microsecond
        ):
            valid_from = to_utc_second(valid_from, "valid_from")
            set_(self, "valid_from", valid_from)
        if valid_until is not None:
            if (
                type(valid_until) is not datetime
                or valid_until.tzinfo is not UTC
                or valid_until.microsecond
            ):
                valid_until = to_utc_second(valid_until, "valid_until")
                set_(self, "valid_until", valid_until)
            if valid_until <= valid_from:
                raise InvalidRequest("valid_until", "must be later than valid_from")
        if self.predecessor is not None:
            parse_certificate_id(self.predecessor, "predecessor")
            if self.predecessor == self.id:
                raise InvalidRequest("predecessor", "a certificate cannot supersede itself")
        fields = self.fields
        if not (type(fields) is dict or isinstance(fields, Mapping)) or not set(
            map(type, fields)
        ) <= {str}:
            raise InvalidRequest("fields", "must be a mapping with string keys")
        set_(self, "fields", FrozenFields(fields))
        index = self.status_list_index
        if type(index) is not int or index < 0:
            raise InvalidRequest("status_list_index", "must be an integer >= 0")
        if self.status_list_uri is not None:
            _require_text(self.status_list_uri, "status_list_uri")

    @property
    def serial(self) -> str:
        """The serial part of the identifier."""
        return self.id.split(".")[-3]

    def to_claims(self) -> JSONObject:
        """The JSON claims this certificate is signed as (see the module docstring)."""
        claims: JSONObject = {
            "id": self.id,
            "type_code": self.type_code,
            "type_name": self.type_name,
            "holder_kind": self.holder_kind,
            "holder_value": self.holder_value,
            "issuer_department": self.issuer_department,
            "issuer_uscc": self.issuer_uscc,
            "version": self.version,
            "issued_at": format_rfc3339(self.issued_at),
            "valid_from": format_rfc3339(self.valid_from),
            "fields": dict(self.fields),
            "status_list_index": self.status_list_index,
            "iat": int(self.issued_at.timestamp()),
            "nbf": int(self.valid_from.timestamp()),
        }
        if self.predecessor is not None:
            claims["predecessor"] = self.predecessor
        if self.valid_until is not None:
            claims["valid_until"] = format_rfc3339(self.valid_until)
            claims["exp"] = int(self.valid_until.timestamp())
        if self.status_list_uri is not None:
            claims["status_list_uri"] = self.status_list_uri
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> Certificate:
        """Rebuild a certificate from its claims. Unknown members are ignored (RFC 7519 §4).

        Raises:
            InvalidRequest: a member is missing or has the wrong type or shape, or a
                NumericDate claim disagrees with its RFC 3339 twin.
        """
        get = claims.get
        try:
            (id_, type_code, type_name, holder_kind, holder_value, department, uscc) = _TEXT_CLAIMS(
                claims
            )
            version, fields, index = _OTHER_CLAIMS(claims)
        except KeyError:
            _raise_claim_type_error(claims)
        predecessor, uri = get("predecessor"), get("status_list_uri")
        # One pass over the types for the usual, well-formed case; `_CLAIM_TYPES` is the
        # same rule spelled out, used to name the member at fault.
        if not (
            type(id_) is str
            and type(type_code) is str
            and type(type_name) is str
            and type(holder_kind) is str
            and type(holder_value) is str
            and type(department) is str
            and type(uscc) is str
            and type(version) is int
            and type(fields) is dict
            and type(index) is int
            and (predecessor is None or type(predecessor) is str)
            and (uri is None or type(uri) is str)
        ):
            _raise_claim_type_error(claims)
        issued_at, valid_from, valid_until = get("issued_at"), get("valid_from"), get("valid_until")
        # The usual case inline; parse_rfc3339 names the member at fault otherwise.
        match = RFC3339_UTC.fullmatch
        if (
            type(issued_at) is str
            and type(valid_from) is str
            and match(issued_at)
            and match(valid_from)
            and (valid_until is None or (type(valid_until) is str and match(valid_until)))
        ):
            try:
                issued = datetime.fromisoformat(issued_at)
                # Most certificates are valid from the moment of issue.
                valid = issued if valid_from == issued_at else datetime.fromisoformat(valid_from)
                until = None if valid_until is None else datetime.fromisoformat(valid_until)
            except ValueError:
                issued, valid, until = _parse_times(issued_at, valid_from, valid_until)
        else:
            issued, valid, until = _parse_times(issued_at, valid_from, valid_until)
        certificate = cls(
            id=id_,
            type_code=type_code,
            type_name=type_name,
            holder_kind=holder_kind,
            holder_value=holder_value,
            issuer_department=department,
            issuer_uscc=uscc,
            issued_at=issued,
            valid_from=valid,
            valid_until=until,
            version=version,
            predecessor=predecessor,
            fields=fields,
            status_list_index=index,
            status_list_uri=uri,
        )
        # RFC 7519 §4.1.4-6: NumericDate twins of the RFC 3339 times, for stock JOSE tools.
        iat, nbf, exp = get("iat"), get("nbf"), get("exp")
        if (
            type(iat) is not int
            or iat != int(issued.timestamp())
            or type(nbf) is not int
            or (nbf != iat if valid is issued else nbf != int(valid.timestamp()))
            or (exp is not None if until is None else type(exp) is not int)
            or (until is not None and exp != int(until.timestamp()))
        ):
            _raise_numeric_date_error(claims, certificate)
        return certificate

    def sign(self, key: SigningKey) -> str:
        """The compact JWS of this certificate signed by `key` (typ `tongban-cert+jws`).

        This only signs: whether `key` may sign for this issuer now is the caller's rule.

        Raises:
            CanonicalizationError: a value in `fields` is not representable as JSON.
        """
        return sign_compact(canonicalize(self.to_claims()), key, typ=TYP_CERTIFICATE)


def _require_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value or value.isspace():
        raise InvalidRequest(name, "must be a non-empty string")


# Claim → (JSON type, optional); the rule `from_claims` checks in one expression.
_CLAIM_TYPES: dict[str, tuple[type, bool]] = {
    "id": (str, False),
    "type_code": (str, False),
    "type_name": (str, False),
    "holder_kind": (str, False),
    "holder_value": (str, False),
    "issuer_department": (str, False),
    "issuer_uscc": (str, False),
    "version": (int, False),
    "predecessor": (str, True),
    "fields": (dict, False),
    "status_list_index": (int, False),
    "status_list_uri": (str, True),
}
_JSON_NAMES: dict[type, str] = {dict: "object", str: "string", int: "integer"}
_TEXT_CLAIMS = itemgetter(
    "id",
    "type_code",
    "type_name",
    "holder_kind",
    "holder_value",
    "issuer_department",
    "issuer_uscc",
)
_OTHER_CLAIMS = itemgetter("version", "fields", "status_list_index")


def _raise_claim_type_error(claims: Mapping[str, object]) -> NoReturn:
    for name, (kind, optional) in _CLAIM_TYPES.items():
        value = claims.get(name)
        # `type(...) is` so that True is not an integer.
        if type(value) is not kind and not (optional and value is None):
            presence = "when present " if optional else ""
            raise InvalidRequest(name, f"must be a JSON {_JSON_NAMES[kind]} {presence}".strip())
    raise AssertionError("unreachable: a claim type was wrong")


def _parse_times(
    issued_at: object, valid_from: object, valid_until: object
) -> tuple[datetime, datetime, datetime | None]:
    return (
        parse_rfc3339(issued_at, "issued_at"),
        parse_rfc3339(valid_from, "valid_from"),
        None if valid_until is None else parse_rfc3339(valid_until, "valid_until"),
    )


def _raise_numeric_date_error(claims: Mapping[str, object], certificate: Certificate) -> NoReturn:
    iat, nbf, exp = claims.get("iat"), claims.get("nbf"), claims.get("exp")
    if type(iat) is not int or iat != int(certificate.issued_at.timestamp()):
        raise InvalidRequest("iat", "must be the NumericDate of issued_at")
    if type(nbf) is not int or nbf != int(certificate.valid_from.timestamp()):
        raise InvalidRequest("nbf", "must be the NumericDate of valid_from")
    valid_until = certificate.valid_until
    if valid_until is None:
        if exp is not None:
            raise InvalidRequest("exp", "present without valid_until")
    elif type(exp) is not int or exp != int(valid_until.timestamp()):
        raise InvalidRequest("exp", "must be the NumericDate of valid_until")
    raise AssertionError("unreachable: a NumericDate was wrong")
