"""Keys: thumbprints, JOSE-form signatures, encrypted PKCS#8, JWK import."""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk as jwcrypto_jwk

from domain.errors import InvalidRequest
from signing import (
    Algorithm,
    KeyMaterialError,
    PublicKey,
    SignatureInvalid,
    SigningKey,
    SoftwareSigningKey,
    WrongPassphrase,
    generate,
    jwk_thumbprint,
)
from signing.base64url import b64url_decode, b64url_encode

PASSPHRASE = b"correct horse battery staple"


@pytest.mark.parametrize("alg", list(Algorithm))
def test_kid_is_the_rfc7638_thumbprint_jwcrypto_computes(alg: Algorithm) -> None:
    key = generate(alg)
    reference = jwcrypto_jwk.JWK(**key.public_jwk()).thumbprint()
    assert key.kid == reference == jwk_thumbprint(key.public_jwk())


def test_rfc8037_appendix_a_public_key_thumbprint() -> None:
    # RFC 8037 A.3: the thumbprint of the A.2 Ed25519 public key.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert PublicKey.from_jwk(jwk).kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rfc8037_appendix_a_signature_verifies() -> None:
    # RFC 8037 A.4: the Ed25519 signature of the A.4 signing input.
    public = PublicKey.from_jwk(
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    )
    signature = b64url_decode(
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    )
    public.verify(signature, b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc")


@pytest.mark.parametrize("alg", list(Algorithm))
def test_sign_verify_round_trip(alg: Algorithm) -> None:
    key = generate(alg)
    signature = key.sign(b"data")
    assert len(signature) == 64
    key.public_key().verify(signature, b"data")
    with pytest.raises(SignatureInvalid):
        key.public_key().verify(signature, b"date")
    with pytest.raises(SignatureInvalid):
        key.public_key().verify(bytes(64), b"data")


def test_es256_signature_is_raw_r_s_not_der() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signature = SoftwareSigningKey(private).sign(b"data")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    private.public_key().verify(encode_dss_signature(r, s), b"data", ec.ECDSA(hashes.SHA256()))


def test_public_jwk_has_only_public_members(any_issuer_key: SoftwareSigningKey) -> None:
    jwk = any_issuer_key.public_jwk()
    assert "d" not in jwk
    assert jwk["kid"] == any_issuer_key.kid
    assert jwk["alg"] == any_issuer_key.alg.value
    assert jwk["use"] == "sig"
    assert set(jwk) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}


def test_repr_and_str_hold_no_private_material() -> None:
    private = Ed25519PrivateKey.generate()
    key = SoftwareSigningKey(private)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert key.kid in text
        for form in (raw.hex(), base64.b64encode(raw).decode(), b64url_encode(raw)):
            assert form not in text


def test_private_keys_do_not_pickle_public_keys_do(es256_key: SoftwareSigningKey) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(es256_key)
    assert pickle.loads(pickle.dumps(es256_key.public_key())) == es256_key.public_key()


class ExternalKey:
    """A stand-in for an HSM binding: satisfies `SigningKey` without being ours."""

    def __init__(self) -> None:
        self._inner = generate()

    @property
    def kid(self) -> str:
        return self._inner.kid

    @property
    def alg(self) -> Algorithm:
        return Algorithm.EDDSA

    def public_jwk(self) -> dict[str, str]:
        return self._inner.public_jwk()

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)


def test_signing_key_protocol_admits_other_implementations() -> None:
    assert isinstance(generate(), SigningKey)
    external = ExternalKey()
    assert isinstance(external, SigningKey)
    PublicKey.from_jwk(external.public_jwk()).verify(external.sign(b"x"), b"x")


# Encrypted PKCS#8


@pytest.mark.parametrize("alg", list(Algorithm))
def test_encrypted_pkcs8_round_trip(alg: Algorithm) -> None:
    key = generate(alg)
    pem = key.to_encrypted_pkcs8(PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    loaded = SoftwareSigningKey.from_encrypted_pkcs8(pem, PASSPHRASE)
    assert loaded.kid == key.kid
    key.public_key().verify(loaded.sign(b"x"), b"x")


def test_encrypted_pkcs8_uses_pbes2_with_600000_pbkdf2_rounds(
    issuer_key: SoftwareSigningKey,
) -> None:
    pem = issuer_key.to_encrypted_pkcs8(PASSPHRASE)
    # Standard PEM: cryptography's own loader reads it with the passphrase.
    assert serialization.load_pem_private_key(pem, PASSPHRASE) is not None
    body = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert bytes.fromhex("06092a864886f70d01050d") in body  # PBES2
    assert bytes.fromhex("06092a864886f70d01050c") in body  # PBKDF2
    assert bytes.fromhex("06082a864886f70d0209") in body  # hmacWithSHA256
    assert bytes.fromhex("060960864801650304012a") in body  # aes256-CBC
    assert bytes.fromhex("02030927c0") in body  # INTEGER 600000


def test_encrypted_pkcs8_in_der_form_loads(issuer_key: SoftwareSigningKey) -> None:
    pem = issuer_key.to_encrypted_pkcs8(PASSPHRASE)
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert SoftwareSigningKey.from_encrypted_pkcs8(der, PASSPHRASE).kid == issuer_key.kid


def test_wrong_passphrase_is_its_own_error(issuer_key: SoftwareSigningKey) -> None:
    pem = issuer_key.to_encrypted_pkcs8(PASSPHRASE)
    with pytest.raises(WrongPassphrase):
        SoftwareSigningKey.from_encrypted_pkcs8(pem, b"not the passphrase")
    with pytest.raises(WrongPassphrase):
        SoftwareSigningKey.from_encrypted_pkcs8(pem, b"")


def _unencrypted_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _rsa_encrypted_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(_unencrypted_pem(), "PEM is not an 'ENCRYPTED PRIVATE KEY'", id="clear-pem"),
        pytest.param(
            _unencrypted_pem().replace(b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"),
            "not an encrypted PKCS#8",
            id="clear-key-mislabelled",
        ),
        pytest.param(b"garbage", "not an encrypted PKCS#8", id="garbage"),
        pytest.param(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "not an encrypted PKCS#8",
            id="truncated",
        ),
        pytest.param(_rsa_encrypted_pem(), "unsupported private key type", id="rsa"),
    ],
)
def test_malformed_key_files_are_not_reported_as_wrong_passphrase(
    data: bytes, message: str
) -> None:
    with pytest.raises(KeyMaterialError, match=message) as caught:
        SoftwareSigningKey.from_encrypted_pkcs8(data, PASSPHRASE)
    assert not isinstance(caught.value, WrongPassphrase)


def test_unencrypted_der_is_refused() -> None:
    der = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyMaterialError, match="not encrypted"):
        SoftwareSigningKey.from_encrypted_pkcs8(der, PASSPHRASE)


def test_export_needs_a_passphrase(issuer_key: SoftwareSigningKey) -> None:
    with pytest.raises(InvalidRequest, match="passphrase"):
        issuer_key.to_encrypted_pkcs8(b"")


def test_other_curves_are_refused() -> None:
    with pytest.raises(KeyMaterialError):
        SoftwareSigningKey(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(KeyMaterialError):
        PublicKey(ec.generate_private_key(ec.SECP384R1()).public_key())


def test_generate_refuses_other_algorithms() -> None:
    with pytest.raises(InvalidRequest, match="unsupported signing algorithm"):
        generate("RS256")


# JWK import


def _ed_jwk(**changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**generate().public_jwk(), **changes}
    return {k: v for k, v in jwk.items() if v is not None}


def _ec_jwk(**changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**generate(Algorithm.ES256).public_jwk(), **changes}
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        pytest.param(_ed_jwk(d="nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"), "private", id="d"),
        pytest.param(_ed_jwk(kty="RSA"), "unsupported JWK", id="kty-rsa"),
        pytest.param(_ed_jwk(crv="X25519"), "unsupported JWK", id="crv-x25519"),
        pytest.param(_ed_jwk(crv=None), "unsupported JWK", id="no-crv"),
        pytest.param(_ed_jwk(x="AAAA"), "32 bytes", id="x-short"),
        pytest.param(_ed_jwk(x="A+A"), "base64url", id="x-not-base64url"),
        pytest.param(_ed_jwk(x=None), "must be a base64url string", id="no-x"),
        pytest.param(_ed_jwk(alg="ES256"), "alg", id="alg-mismatch"),
        pytest.param(_ed_jwk(kid="someone-else"), "kid", id="kid-mismatch"),
        pytest.param(_ed_jwk(use="enc"), "use", id="use-enc"),
        pytest.param(_ed_jwk(key_ops=["sign"]), "key_ops", id="key-ops-without-verify"),
        pytest.param(_ec_jwk(y=b64url_encode(bytes(31) + b"\x01")), "not on P-256", id="off-curve"),
        pytest.param(_ec_jwk(y=None), "must be a base64url string", id="no-y"),
        pytest.param(_ec_jwk(crv="P-384"), "unsupported JWK", id="p384"),
        pytest.param(["not", "a", "jwk"], "JSON object", id="not-a-mapping"),
    ],
)
def test_public_jwk_import_refuses(jwk: Any, message: str) -> None:
    with pytest.raises(KeyMaterialError, match=message):
        PublicKey.from_jwk(jwk)


def test_public_jwk_without_optional_members_loads(es256_key: SoftwareSigningKey) -> None:
    bare = {k: es256_key.public_jwk()[k] for k in ("kty", "crv", "x", "y")}
    public = PublicKey.from_jwk(bare)
    assert public == es256_key.public_key()
    assert hash(public) == hash(es256_key.public_key())
    assert public.alg is Algorithm.ES256
