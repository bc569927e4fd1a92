"""Certificate content, claims, and the GB/T 36904-shape identifier."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signing_testkit import FAR, STATUS_URI, T0, TYPE_CODE, USCC_A, USCC_B, make_certificate

from domain.errors import InvalidRequest
from signing import (
    CanonicalizationError,
    Certificate,
    CertificateId,
    FrozenFields,
    SoftwareSigningKey,
    canonicalize,
    certificate_id,
    iso7064_mod37_36,
    parse_certificate_id,
)

ALPHABET = string.digits + string.ascii_uppercase


def reference_mod37_36(body: str) -> str:
    """ISO/IEC 7064 MOD 37,36 from the standard's recurrence, written independently.

    P1 = M = 36; for each character S = (P + a) mod 36 with 0 read as 36, then
    P = 2S mod 37; the check character c is the one with (P + c) mod 36 = 1.
    """
    p = 36
    for character in body:
        s = (p + ALPHABET.index(character)) % 36 or 36
        p = (2 * s) % 37
    return next(c for c in ALPHABET if (p + ALPHABET.index(c)) % 36 == 1)


@pytest.mark.parametrize(
    ("body", "check"),
    [
        # Published examples of MOD 37,36: the GRid of Wikipedia's GRid article, and the
        # ISAN root check of "Star Trek: Amok Time".
        ("A12425GABC1234002", "M"),
        ("00000000C36D002B", "K"),
        # By hand: "0": S = 36, P = 72 mod 37 = 35, (35 + 2) mod 36 = 1 → "2".
        ("0", "2"),
        # "A" (10): S = 46 mod 36 = 10, P = 20, (20 + 17) mod 36 = 1 → "H" (17).
        ("A", "H"),
    ],
)
def test_mod37_36_known_vectors(body: str, check: str) -> None:
    assert iso7064_mod37_36(body) == check
    assert reference_mod37_36(body) == check


@given(st.text(alphabet=ALPHABET, min_size=1, max_size=60))
def test_mod37_36_matches_the_reference(body: str) -> None:
    assert iso7064_mod37_36(body) == reference_mod37_36(body)


ID_TABLE = [
    (TYPE_CODE, USCC_A, "20250001", 1),
    (TYPE_CODE, USCC_B, "20250001", 1),
    (TYPE_CODE, USCC_A, "20250001", 2),
    ("1", USCC_A, "1", 999),
    ("Z" * 64, USCC_A, "9" * 64, 10),
]


@pytest.mark.parametrize(("type_code", "uscc", "serial", "version"), ID_TABLE)
def test_certificate_id_shape_and_check(
    type_code: str, uscc: str, serial: str, version: int
) -> None:
    built = certificate_id(type_code, uscc, serial, version)
    check = reference_mod37_36(f"{type_code}{uscc}{serial}{version:03d}")
    assert built == f"1.2.156.3005.2.{type_code}.{uscc}.{serial}.{version:03d}.{check}"
    assert parse_certificate_id(built) == CertificateId(type_code, uscc, serial, version, check)


def test_every_single_substitution_is_caught() -> None:
    good = certificate_id(TYPE_CODE, USCC_A, "20250001", 1)
    prefix_length = len("1.2.156.3005.2.")
    caught = 0
    for position in range(prefix_length, len(good)):
        if good[position] == ".":
            continue
        for replacement in ALPHABET:
            if replacement == good[position]:
                continue
            changed = good[:position] + replacement + good[position + 1 :]
            with pytest.raises(InvalidRequest):
                parse_certificate_id(changed)
            caught += 1
    assert caught > 1500


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("1.2.156.3005.1.A." + USCC_A + ".1.001.X", "must look like", id="wrong-arc"),
        pytest.param("1.2.156.3005.2." + USCC_A + ".1.001.X", "must look like", id="no-type"),
        pytest.param("1.2.156.3005.2.a." + USCC_A + ".1.001.X", "must look like", id="lower-case"),
        pytest.param(
            "1.2.156.3005.2.A.91350100M000100YO3.1.001.X", "must look like", id="uscc-with-O"
        ),
        pytest.param("1.2.156.3005.2.A." + USCC_A + ".1.01.X", "must look like", id="two-digits"),
        pytest.param(
            "1.2.156.3005.2.A." + USCC_A + ".1.0001.X", "must look like", id="four-digits"
        ),
        pytest.param("1.2.156.3005.2.A." + USCC_A + "..001.X", "must look like", id="no-serial"),
        pytest.param("1.2.156.3005.2.A." + USCC_A + ".1.001", "must look like", id="no-check"),
        pytest.param("1.2.156.3005.2.A." + USCC_A + ".1.001.XX", "must look like", id="long-check"),
        pytest.param(
            certificate_id(TYPE_CODE, USCC_A, "1", 1) + ".1", "must look like", id="extra-part"
        ),
        pytest.param(" " + certificate_id(TYPE_CODE, USCC_A, "1", 1), "must look like", id="space"),
        pytest.param(
            certificate_id(TYPE_CODE, USCC_A, "1", 1)[:-1] + "0"
            if certificate_id(TYPE_CODE, USCC_A, "1", 1)[-1] != "0"
            else certificate_id(TYPE_CODE, USCC_A, "1", 1)[:-1] + "1",
            "check character",
            id="wrong-check",
        ),
        pytest.param(
            f"1.2.156.3005.2.A.{USCC_A}.1.000.{reference_mod37_36('A' + USCC_A + '1000')}",
            "001 or more",
            id="version-000",
        ),
        pytest.param(None, "must look like", id="not-text"),
    ],
)
def test_parse_certificate_id_refuses(text: Any, rule: str) -> None:
    with pytest.raises(InvalidRequest, match=rule) as caught:
        parse_certificate_id(text)
    assert caught.value.field == "certificate_id"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((("a"), USCC_A, "1", 1), "type_code"),
        (("", USCC_A, "1", 1), "type_code"),
        (("A" * 65, USCC_A, "1", 1), "type_code"),
        (("A", "91350100M000100Y4", "1", 1), "issuer_uscc"),
        (("A", "91350100M000100YI3", "1", 1), "issuer_uscc"),
        (("A", USCC_A, "1-2", 1), "serial"),
        (("A", USCC_A, "1", 0), "version"),
        (("A", USCC_A, "1", 1000), "version"),
        (("A", USCC_A, "1", True), "version"),
    ],
)
def test_certificate_id_names_the_bad_part(arguments: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        certificate_id(*arguments)
    assert caught.value.field == field


# The certificate


def test_claims_layout() -> None:
    certificate = make_certificate(
        predecessor=certificate_id(TYPE_CODE, USCC_A, "20240009", 1),
        valid_until=datetime(2030, 1, 1, tzinfo=UTC),
    )
    claims = certificate.to_claims()
    assert claims == {
        "id": certificate.id,
        "type_code": TYPE_CODE,
        "type_name": "营业执照",
        "holder_kind": "USCC",
        "holder_value": "91350100MA2XYZ0A1B",
        "issuer_department": "福州市市场监督管理局",
        "issuer_uscc": USCC_A,
        "version": 1,
        "predecessor": certificate.predecessor,
        "issued_at": "2025-01-11T00:00:00Z",
        "valid_from": "2025-01-11T00:00:00Z",
        "valid_until": "2030-01-01T00:00:00Z",
        "fields": dict(certificate.fields),
        "status_list_index": 7,
        "status_list_uri": STATUS_URI,
        "iat": 1736553600,
        "nbf": 1736553600,
        "exp": 1893456000,
    }
    assert Certificate.from_claims(json.loads(canonicalize(claims))) == certificate


def test_optional_members_are_omitted_when_unset() -> None:
    claims = make_certificate(valid_until=None, status_list_uri=None).to_claims()
    for absent in ("valid_until", "exp", "predecessor", "status_list_uri"):
        assert absent not in claims
    assert Certificate.from_claims(claims).valid_until is None


def test_times_are_utc_whole_seconds() -> None:
    beijing = timezone(timedelta(hours=8))
    certificate = make_certificate(
        issued_at=datetime(2025, 3, 1, 8, 0, 0, 999_999, tzinfo=beijing),
        valid_from=datetime(2025, 3, 1, 8, 0, 0, tzinfo=beijing),
    )
    assert certificate.issued_at == datetime(2025, 3, 1, 0, 0, 0, tzinfo=UTC)
    assert certificate.issued_at.tzinfo is UTC
    assert certificate.to_claims()["issued_at"] == "2025-03-01T00:00:00Z"


def test_certificate_is_immutable() -> None:
    certificate = make_certificate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        certificate.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        certificate.fields["name"] = "changed"  # type: ignore[index]
    fields = {"name": "original"}
    copied = make_certificate(fields=fields)
    fields["name"] = "changed"
    assert copied.fields["name"] == "original"
    assert hash(copied) == hash(make_certificate(fields={"name": "other"}))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"issued_at": datetime(2025, 1, 1)}, "issued_at"),
        ({"issued_at": "2025-01-01T00:00:00Z"}, "issued_at"),
        ({"valid_until": 1893456000}, "valid_until"),
        ({"valid_from": datetime(2025, 1, 1)}, "valid_from"),
        ({"valid_until": datetime(2020, 1, 1, tzinfo=UTC)}, "valid_until"),
        ({"valid_until": T0 + timedelta(days=10)}, "valid_until"),
        ({"type_code": "OTHER"}, "type_code"),
        ({"issuer_uscc": USCC_B}, "issuer_uscc"),
        ({"version": 2}, "version"),
        ({"id": "1.2.3"}, "id"),
        ({"type_name": " "}, "type_name"),
        ({"holder_kind": "id_card"}, "holder_kind"),
        ({"holder_value": ""}, "holder_value"),
        ({"issuer_department": ""}, "issuer_department"),
        ({"predecessor": "not-an-id"}, "predecessor"),
        ({"fields": {1: "x"}}, "fields"),
        ({"fields": ["x"]}, "fields"),
        ({"status_list_index": -1}, "status_list_index"),
        ({"status_list_index": True}, "status_list_index"),
        ({"status_list_uri": ""}, "status_list_uri"),
    ],
)
def test_construction_validates(overrides: dict[str, Any], field: str) -> None:
    # The id is kept, so changing type_code, issuer_uscc or version makes them disagree.
    values = {**dataclasses.asdict(make_certificate()), **overrides}
    with pytest.raises(InvalidRequest) as caught:
        Certificate(**values)
    assert caught.value.field == field


def test_certificate_pickles_and_copies() -> None:
    certificate = make_certificate()
    assert pickle.loads(pickle.dumps(certificate)) == certificate
    assert copy.deepcopy(certificate) == certificate
    assert Certificate(**dataclasses.asdict(certificate)) == certificate
    assert isinstance(certificate.fields, FrozenFields)
    assert certificate.fields == dict(certificate.fields)


def test_a_certificate_cannot_supersede_itself() -> None:
    certificate = make_certificate()
    with pytest.raises(InvalidRequest, match="supersede itself"):
        dataclasses.replace(certificate, predecessor=certificate.id)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = make_certificate().to_claims()
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        (_claims(id=None), "id"),
        (_claims(type_name=7), "type_name"),
        (_claims(holder_value=None), "holder_value"),
        (_claims(version="1"), "version"),
        (_claims(version=True), "version"),
        (_claims(version=1.0), "version"),
        (_claims(fields=[]), "fields"),
        (_claims(status_list_index=None), "status_list_index"),
        (_claims(status_list_uri=5), "status_list_uri"),
        (_claims(predecessor=5), "predecessor"),
        (_claims(issued_at="2025-01-11T00:00:00+00:00"), "issued_at"),
        (_claims(issued_at="2025-01-11T00:00:00.000Z"), "issued_at"),
        (_claims(issued_at="2025-02-30T00:00:00Z"), "issued_at"),
        (_claims(valid_from=None), "valid_from"),
        (_claims(valid_until="tomorrow"), "valid_until"),
        (_claims(iat=None), "iat"),
        (_claims(iat=1736553601), "iat"),
        (_claims(iat=1736553600.0), "iat"),
        (_claims(nbf=0), "nbf"),
        (_claims(exp=1), "exp"),
        (_claims(valid_until=None), "exp"),
        (_claims(exp=None), "exp"),
    ],
)
def test_from_claims_names_the_bad_member(claims: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Certificate.from_claims(claims)
    assert caught.value.field == field


def test_valid_from_may_differ_from_issued_at() -> None:
    certificate = make_certificate(valid_from=T0 + timedelta(days=30))
    assert Certificate.from_claims(certificate.to_claims()) == certificate


def test_unknown_claims_are_ignored() -> None:
    # RFC 7519 §4: claims not understood are ignored.
    assert Certificate.from_claims(_claims(jti="x", iss="y")) == make_certificate()


def test_sign_refuses_fields_json_cannot_carry(issuer_key: SoftwareSigningKey) -> None:
    with pytest.raises(CanonicalizationError):
        make_certificate(fields={"amount": float("nan")}).sign(issuer_key)


def test_serial_property() -> None:
    assert make_certificate(serial="ABC123").serial == "ABC123"
    assert make_certificate(valid_until=FAR).valid_until == FAR
