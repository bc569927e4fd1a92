"""JWS compact serialization in the strict profile, and strict base64url."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing import (
    TYP_CERTIFICATE,
    TYP_TRUST_BUNDLE,
    MalformedToken,
    SignatureInvalid,
    SoftwareSigningKey,
    parse_compact,
    parse_header,
    sign_compact,
    verify_compact,
)
from signing.base64url import b64url_decode, b64url_encode

PAYLOAD = b'{"hello":"world"}'


def test_round_trip(any_issuer_key: SoftwareSigningKey) -> None:
    token = sign_compact(PAYLOAD, any_issuer_key, typ=TYP_CERTIFICATE)
    header, payload, _ = token.split(".")
    # RFC 7515 §7.1 over the JCS header {"alg","kid","typ"}.
    assert (
        b64url_decode(header)
        == (
            f'{{"alg":"{any_issuer_key.alg.value}","kid":"{any_issuer_key.kid}",'
            f'"typ":"{TYP_CERTIFICATE}"}}'
        ).encode()
    )
    assert b64url_decode(payload) == PAYLOAD
    jws = verify_compact(token, any_issuer_key.public_key(), typ=TYP_CERTIFICATE)
    assert jws.payload == PAYLOAD
    assert jws.kid == any_issuer_key.kid
    assert jws.alg is any_issuer_key.alg
    assert jws.signing_input == f"{header}.{payload}".encode()
    assert jws.claims() == {"hello": "world"}
    assert "=" not in token


def _token(header: object, payload: bytes = PAYLOAD, signature: bytes = bytes(64)) -> str:
    encoded = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return ".".join(b64url_encode(part) for part in (encoded, payload, signature))


GOOD_HEADER = {"alg": "EdDSA", "kid": "k1", "typ": TYP_CERTIFICATE}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("", "3 parts", id="empty"),
        pytest.param("a.b", "3 parts", id="two-parts"),
        pytest.param(_token(GOOD_HEADER) + ".AAAA", "3 parts", id="four-parts"),
        pytest.param(_token(GOOD_HEADER) + "==", "signature", id="padding"),
        pytest.param(_token(GOOD_HEADER).replace(".", ". ", 1), "alphabet", id="space"),
        pytest.param("eyJ+." + _token(GOOD_HEADER).split(".", 1)[1], "alphabet", id="plus"),
        pytest.param(_token(GOOD_HEADER)[:-1] + "B", "trailing bits", id="sig-trailing-bits"),
        pytest.param("Q." + _token(GOOD_HEADER).split(".", 1)[1], r"4n\+1", id="impossible-length"),
        pytest.param(_token(b"not json"), "header: not JSON", id="header-not-json"),
        pytest.param(_token(["alg", "EdDSA"]), "not a JSON object", id="header-array"),
        pytest.param(
            _token(b'{"alg":"EdDSA","alg":"none","kid":"k1","typ":"tongban-cert+jws"}'),
            "duplicate member 'alg'",
            id="duplicate-alg",
        ),
        pytest.param(_token({**GOOD_HEADER, "alg": "none"}), "alg 'none'", id="alg-none"),
        pytest.param(_token({**GOOD_HEADER, "alg": "NONE"}), "alg 'none'", id="alg-NONE"),
        pytest.param(_token({**GOOD_HEADER, "alg": "HS256"}), "not accepted", id="alg-hs256"),
        pytest.param(_token({**GOOD_HEADER, "alg": "RS256"}), "not accepted", id="alg-rs256"),
        pytest.param(_token({**GOOD_HEADER, "alg": "Ed25519"}), "not accepted", id="alg-ed25519"),
        pytest.param(
            _token({"kid": "k1", "typ": TYP_CERTIFICATE}), "'alg' is missing", id="no-alg"
        ),
        pytest.param(_token({**GOOD_HEADER, "crit": ["exp"]}), "crit", id="crit"),
        pytest.param(_token({**GOOD_HEADER, "crit": []}), "crit", id="crit-empty"),
        pytest.param(_token({**GOOD_HEADER, "b64": False}), "b64", id="b64"),
        pytest.param(_token({"alg": "EdDSA", "typ": TYP_CERTIFICATE}), "'kid'", id="no-kid"),
        pytest.param(_token({**GOOD_HEADER, "kid": ""}), "'kid'", id="empty-kid"),
        pytest.param(_token({**GOOD_HEADER, "kid": 7}), "'kid'", id="numeric-kid"),
        pytest.param(_token({**GOOD_HEADER, "typ": "JWT"}), "typ 'JWT'", id="typ-jwt"),
        pytest.param(_token({**GOOD_HEADER, "typ": None}), "typ None", id="no-typ"),
        pytest.param(_token(GOOD_HEADER, signature=bytes(63)), "63 bytes", id="short-signature"),
        pytest.param(_token(GOOD_HEADER, signature=b""), "0 bytes", id="empty-signature"),
        pytest.param(
            _token({**GOOD_HEADER, "x": "a" * 1000}), "header is longer", id="huge-header"
        ),
        pytest.param("a" * (1 << 20) + ".b.c", "longer than", id="huge-token"),
        pytest.param("ä." + _token(GOOD_HEADER).split(".", 1)[1], "alphabet", id="non-ascii"),
    ],
)
def test_strict_parse_refuses(token: str, message: str) -> None:
    with pytest.raises(MalformedToken, match=message):
        parse_compact(token, typ=TYP_CERTIFICATE)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param(_token({**GOOD_HEADER, "alg": "none"}), "alg 'none'", id="alg-none"),
        pytest.param(_token({**GOOD_HEADER, "typ": "JWT"}), "typ 'JWT'", id="typ-jwt"),
        pytest.param(_token({**GOOD_HEADER, "crit": []}), "crit", id="crit"),
        pytest.param(_token({"alg": "EdDSA", "typ": TYP_CERTIFICATE}), "'kid'", id="no-kid"),
        pytest.param(_token(b"not json"), "header: not JSON", id="header-not-json"),
        pytest.param(
            _token({**GOOD_HEADER, "x": "a" * 1000}), "header is longer", id="huge-header"
        ),
        pytest.param("ä." + _token(GOOD_HEADER).split(".", 1)[1], "alphabet", id="non-ascii"),
        pytest.param("", "3 parts", id="empty"),
    ],
)
def test_the_header_alone_is_held_to_the_same_rules(token: str, message: str) -> None:
    with pytest.raises(MalformedToken, match=message):
        parse_header(token, typ=TYP_CERTIFICATE)
    with pytest.raises(MalformedToken, match=message):
        parse_compact(token, typ=TYP_CERTIFICATE)


def test_the_header_alone_names_alg_and_kid_whatever_follows_it(
    any_issuer_key: SoftwareSigningKey,
) -> None:
    token = sign_compact(PAYLOAD, any_issuer_key, typ=TYP_CERTIFICATE)
    header = token.split(".")[0]

    assert parse_header(token, typ=TYP_CERTIFICATE) == (any_issuer_key.alg, any_issuer_key.kid)
    # Only the header is read: a mangled payload or signature is parse_compact's to refuse.
    mangled = f"{header}.not base64!.x"
    assert parse_header(mangled, typ=TYP_CERTIFICATE) == (any_issuer_key.alg, any_issuer_key.kid)
    with pytest.raises(MalformedToken):
        parse_compact(mangled, typ=TYP_CERTIFICATE)
    with pytest.raises(MalformedToken, match="typ"):
        parse_header(token, typ=TYP_TRUST_BUNDLE)
    with pytest.raises(MalformedToken, match="text"):
        parse_header(b"a.b.c", typ=TYP_CERTIFICATE)  # type: ignore[arg-type]


def test_parse_refuses_non_text() -> None:
    with pytest.raises(MalformedToken, match="text"):
        parse_compact(b"a.b.c", typ=TYP_CERTIFICATE)  # type: ignore[arg-type]


def test_unknown_non_critical_header_members_are_ignored() -> None:
    # RFC 7515 §4: members not understood and not critical must be ignored.
    jws = parse_compact(
        _token({**GOOD_HEADER, "cty": "json", "x5u": "https://evil/"}), typ=TYP_CERTIFICATE
    )
    assert jws.kid == "k1"


def test_payload_claims_must_be_a_strict_object(issuer_key: SoftwareSigningKey) -> None:
    for payload, message in [(b"[1]", "not a JSON object"), (b'{"a":1,"a":2}', "duplicate")]:
        jws = parse_compact(
            sign_compact(payload, issuer_key, typ=TYP_CERTIFICATE), typ=TYP_CERTIFICATE
        )
        with pytest.raises(MalformedToken, match=message):
            jws.claims()


def test_verify_compact_insists_on_the_given_key(
    issuer_key: SoftwareSigningKey, other_key: SoftwareSigningKey
) -> None:
    token = sign_compact(PAYLOAD, issuer_key, typ=TYP_TRUST_BUNDLE)
    with pytest.raises(SignatureInvalid, match="expected"):
        verify_compact(token, other_key.public_key(), typ=TYP_TRUST_BUNDLE)
    header, _, signature = token.split(".")
    forged = f"{header}.{b64url_encode(b'{}')}.{signature}"
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_compact(forged, issuer_key.public_key(), typ=TYP_TRUST_BUNDLE)
    with pytest.raises(MalformedToken, match="typ"):
        verify_compact(token, issuer_key.public_key(), typ=TYP_CERTIFICATE)


def test_header_alg_must_match_the_key(
    issuer_key: SoftwareSigningKey, es256_key: SoftwareSigningKey
) -> None:
    header = b64url_encode(
        json.dumps({"alg": "ES256", "kid": issuer_key.kid, "typ": TYP_CERTIFICATE}).encode()
    )
    signing_input = f"{header}.{b64url_encode(PAYLOAD)}"
    token = f"{signing_input}.{b64url_encode(es256_key.sign(signing_input.encode()))}"
    with pytest.raises(SignatureInvalid, match="alg"):
        verify_compact(token, issuer_key.public_key(), typ=TYP_CERTIFICATE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", b""), ("QQ", b"A"), ("QUI", b"AB"), ("QUJD", b"ABC"), ("-_8", b"\xfb\xff")],
)
def test_base64url_decodes(text: str, expected: bytes) -> None:
    assert b64url_decode(text) == expected
    assert b64url_encode(expected) == text


@pytest.mark.parametrize(
    "text",
    ["Q", "QR", "QUJ", "QQ==", "QQ=", "+/8", "QU I", "QU\nI", "QUI!", "ＱＱ", "QQ\x00"],
)
def test_base64url_refuses_every_other_spelling(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by fault
        b64url_decode(text)


@given(st.binary(max_size=80))
def test_base64url_round_trips(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .",
        max_size=12,
    )
)
def test_base64url_accepts_exactly_the_canonical_encodings(text: str) -> None:
    try:
        data = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode(data) == text
