"""SM2 / SM3 against the published vectors, and the JOSE and PKCS#8 forms of SM2 keys.

Vectors: GB/T 32918.5-2017 (= GM/T 0003.5-2012) Annex A, the signature example on the
recommended curve (its key, the message "message digest", user ID 1234567812345678,
the Z value, e and the signature r, s); GB/T 32905-2016 Annex A for SM3.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from domain.crypto import CryptoSuite, HashAlg
from signing import (
    Algorithm,
    KeyMaterialError,
    MalformedToken,
    PublicKey,
    SignatureInvalid,
    SoftwareSigningKey,
    WrongPassphrase,
    generate,
    jwk_thumbprint,
    parse_compact,
    sign_compact,
    verify_compact,
)
from signing.base64url import b64url_encode
from signing.sm2 import DEFAULT_USER_ID, ORDER, Sm2PrivateKey, Sm2PublicKey

# GB/T 32918.5-2017 Annex A (GM/T 0003.5-2012 A.2).
STANDARD_D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
STANDARD_X = bytes.fromhex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")
STANDARD_Y = bytes.fromhex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
STANDARD_MESSAGE = b"message digest"
STANDARD_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
STANDARD_E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
STANDARD_R = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
STANDARD_S = bytes.fromhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")

# GB/T 32918.5-2017 §4: the recommended curve's a, b, G.
CURVE_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
CURVE_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
GX = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
GY = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        # GB/T 32905-2016 A.1 and A.2.
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_sm3_matches_gbt_32905(message: bytes, digest: str) -> None:
    assert HashAlg.SM3.hexdigest(message) == digest
    assert HashAlg.SM3.tagged(message) == f"sm3:{digest}"
    assert HashAlg.of_tagged(f"sm3:{digest}") is HashAlg.SM3


def test_the_suites_name_their_hash_and_signature() -> None:
    assert CryptoSuite.GM.hash_alg is HashAlg.SM3
    assert CryptoSuite.INTERNATIONAL.hash_alg is HashAlg.SHA256
    assert Algorithm(CryptoSuite.GM.signing_alg) is Algorithm.SM2
    assert Algorithm("SM2") is Algorithm.SM2 is Algorithm("sm3withsm2")
    assert Algorithm.SM2.suite == "gm"
    assert Algorithm.EDDSA.suite == "international"


def test_z_and_e_of_the_standard_example() -> None:
    # GB/T 32918.2-2016 §5.5: Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA).
    entl = (len(DEFAULT_USER_ID) * 8).to_bytes(2, "big")
    z = HashAlg.SM3.digest(
        entl + DEFAULT_USER_ID + CURVE_A + CURVE_B + GX + GY + STANDARD_X + STANDARD_Y
    )
    assert z == STANDARD_Z
    assert HashAlg.SM3.digest(z + STANDARD_MESSAGE) == STANDARD_E


def test_the_standards_signature_verifies() -> None:
    key = Sm2PublicKey(STANDARD_X, STANDARD_Y)
    key.verify(STANDARD_R + STANDARD_S, STANDARD_MESSAGE)
    with pytest.raises(SignatureInvalid):
        key.verify(STANDARD_R + STANDARD_S, b"message digesT")
    with pytest.raises(SignatureInvalid):  # another user ID gives another Z
        Sm2PublicKey(STANDARD_X, STANDARD_Y, user_id=b"ALICE123@YAHOO.COM").verify(
            STANDARD_R + STANDARD_S, STANDARD_MESSAGE
        )
    flipped = bytes([STANDARD_R[0] ^ 1]) + STANDARD_R[1:] + STANDARD_S
    with pytest.raises(SignatureInvalid):
        key.verify(flipped, STANDARD_MESSAGE)


def _standard_pkcs8() -> bytes:
    # PKCS#8 {0, {id-ecPublicKey, sm2p256v1}, ECPrivateKey {1, d}} without the public
    # key: OpenSSL derives it, so this also checks d -> P against the standard.
    ec_private = bytes.fromhex("302502010104") + bytes([32]) + STANDARD_D
    algorithm = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
    body = bytes.fromhex("020100") + algorithm + bytes([0x04, len(ec_private)]) + ec_private
    return bytes([0x30, len(body)]) + body


def test_the_standards_private_key_gives_its_public_key_and_signs() -> None:
    key = Sm2PrivateKey.from_pkcs8_der(_standard_pkcs8())
    assert (key.public.x, key.public.y) == (STANDARD_X, STANDARD_Y)
    assert key.private_scalar() == STANDARD_D
    signature = key.sign(STANDARD_MESSAGE)
    assert len(signature) == 64
    Sm2PublicKey(STANDARD_X, STANDARD_Y).verify(signature, STANDARD_MESSAGE)


def test_jwk_form_and_thumbprint() -> None:
    key = SoftwareSigningKey(Sm2PrivateKey.from_pkcs8_der(_standard_pkcs8()))
    jwk = key.public_jwk()
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "SM2", "SM3withSM2")
    assert (jwk["x"], jwk["y"]) == (b64url_encode(STANDARD_X), b64url_encode(STANDARD_Y))
    # RFC 7638 §3.2: crv, kty, x, y in that order, no whitespace.
    import hashlib

    members = f'{{"crv":"SM2","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = b64url_encode(hashlib.sha256(members.encode()).digest())
    assert key.kid == jwk["kid"] == jwk_thumbprint(jwk) == expected
    assert PublicKey.from_jwk(jwk) == key.public_key()


def test_a_point_off_the_curve_and_bad_members_are_refused() -> None:
    jwk = generate("SM2").public_jwk()
    off = dict(jwk, y=b64url_encode(bytes(31) + b"\x01"))
    del off["kid"]
    with pytest.raises(KeyMaterialError, match="not on the SM2 curve"):
        PublicKey.from_jwk(off)
    with pytest.raises(KeyMaterialError):
        PublicKey.from_jwk(dict(jwk, x=b64url_encode(bytes(16))))
    with pytest.raises(KeyMaterialError, match="alg"):
        PublicKey.from_jwk(dict(jwk, alg="ES256"))


@pytest.mark.parametrize(
    "signature",
    [bytes(64), (ORDER).to_bytes(32, "big") * 2, b"\x01" * 63],
    ids=["zero", "r-and-s-equal-n", "short"],
)
def test_out_of_range_signatures_fail(signature: bytes) -> None:
    with pytest.raises(SignatureInvalid):
        Sm2PublicKey(STANDARD_X, STANDARD_Y).verify(signature, STANDARD_MESSAGE)


def test_jws_with_sm2_and_algorithm_confusion() -> None:
    key = generate(Algorithm.SM2)
    token = sign_compact(b'{"a":1}', key, typ="t")
    assert parse_compact(token, typ="t").header["alg"] == "SM3withSM2"
    verify_compact(token, key.public_key(), typ="t")
    # An EdDSA key never verifies an SM2 token, nor the reverse.
    with pytest.raises(SignatureInvalid):
        verify_compact(token, generate().public_key(), typ="t")
    ed = sign_compact(b'{"a":1}', generate(), typ="t")
    with pytest.raises(SignatureInvalid):
        verify_compact(ed, key.public_key(), typ="t")
    _, payload, signature = token.split(".")
    other = b64url_encode(b'{"alg":"SM2","kid":"' + key.kid.encode() + b'","typ":"t"}')
    with pytest.raises(MalformedToken, match="not accepted"):
        parse_compact(f"{other}.{payload}.{signature}", typ="t")


def test_encrypted_pkcs8_round_trip_and_wrong_passphrase() -> None:
    key = generate("SM2")
    pem = key.to_encrypted_pkcs8(b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert SoftwareSigningKey.from_encrypted_pkcs8(pem, b"correct horse").kid == key.kid
    with pytest.raises(WrongPassphrase):
        SoftwareSigningKey.from_encrypted_pkcs8(pem, b"wrong")


@needs_openssl
def test_openssl_reads_the_pkcs8_as_an_sm2_key(tmp_path: Path) -> None:
    key = generate("SM2")
    (tmp_path / "key.pem").write_bytes(key.to_encrypted_pkcs8(b"pw"))
    shown = subprocess.run(
        [
            str(OPENSSL),
            "pkey",
            "-in",
            str(tmp_path / "key.pem"),
            "-passin",
            "pass:pw",
            "-noout",
            "-text",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ASN1 OID: SM2" in shown
    assert "pub:" in shown
    parsed = subprocess.run(
        [
            str(OPENSSL),
            "pkey",
            "-in",
            str(tmp_path / "key.pem"),
            "-passin",
            "pass:pw",
            "-outform",
            "DER",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert bytes.fromhex("06082a811ccf5501822d") in parsed  # 1.2.156.10197.1.301


@needs_openssl
def test_a_key_made_by_openssl_loads(tmp_path: Path) -> None:
    plain, encrypted = tmp_path / "plain.pem", tmp_path / "encrypted.pem"
    run = {"capture_output": True, "check": True}
    subprocess.run([str(OPENSSL), "genpkey", "-algorithm", "SM2", "-out", str(plain)], **run)
    subprocess.run(
        [
            str(OPENSSL),
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            str(plain),
            "-out",
            str(encrypted),
            "-passout",
            "pass:pw",
        ],
        **run,
    )
    key = SoftwareSigningKey.from_encrypted_pkcs8(encrypted.read_bytes(), b"pw")
    assert key.alg is Algorithm.SM2
    with pytest.raises(KeyMaterialError, match="ENCRYPTED PRIVATE KEY"):
        SoftwareSigningKey.from_encrypted_pkcs8(plain.read_bytes(), b"pw")
