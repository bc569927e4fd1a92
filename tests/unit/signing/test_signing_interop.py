"""Stock JOSE libraries verify Tongban tokens with the trust bundle's JWKS, and the reverse.

jwcrypto and PyJWT appear only here, as independent implementations of RFC 7515/7517.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from signing_testkit import make_certificate, ring_with

from signing import (
    TYP_CERTIFICATE,
    Certificate,
    SoftwareSigningKey,
    StatusList,
    TrustBundle,
    Verifier,
    canonicalize,
)


def _current_certificate() -> Certificate:
    # Stock libraries check nbf/exp against the real clock.
    now = datetime.now(UTC).replace(microsecond=0)
    return make_certificate(
        issued_at=now - timedelta(days=1), valid_until=now + timedelta(days=365)
    )


def _bundle_jwks(
    issuer: SoftwareSigningKey, root: SoftwareSigningKey
) -> tuple[dict[str, object], TrustBundle]:
    """The JWKS exactly as a verifier downloads it: the payload of the signed bundle."""
    now = datetime.now(UTC)
    token = (
        ring_with(issuer, at=now - timedelta(days=30))
        .bundle(issued_at=now, next_update=now, expires=now + timedelta(days=1))
        .sign(root)
    )
    bundle = TrustBundle.load(token, root.public_jwk(), now)
    jwks = jwcrypto_jws.JWS()
    jwks.deserialize(token)
    jwks.verify(jwcrypto_jwk.JWK(**root.public_jwk()))
    return json.loads(jwks.payload), bundle


def test_jwcrypto_verifies_with_the_bundle_jwks(
    any_issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    certificate = _current_certificate()
    token = certificate.sign(any_issuer_key)
    jwks, _ = _bundle_jwks(any_issuer_key, root_key)

    key_set = jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks))
    parsed = jwcrypto_jws.JWS()
    parsed.deserialize(token)
    kid = parsed.jose_header["kid"]
    parsed.verify(key_set.get_key(kid), alg=any_issuer_key.alg.value)
    assert parsed.jose_header["typ"] == TYP_CERTIFICATE
    assert json.loads(parsed.payload) == certificate.to_claims()


def test_pyjwt_verifies_with_the_bundle_jwks(
    any_issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    certificate = _current_certificate()
    token = certificate.sign(any_issuer_key)
    jwks, _ = _bundle_jwks(any_issuer_key, root_key)

    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=[any_issuer_key.alg.value])
    assert claims == certificate.to_claims()
    # PyJWT applies exp itself: an expired certificate is refused by it too.
    expired = make_certificate(valid_until=datetime(2025, 6, 1, tzinfo=UTC)).sign(any_issuer_key)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(expired, key.key, algorithms=[any_issuer_key.alg.value])


def test_pyjwt_refuses_a_tampered_token(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    token = _current_certificate().sign(issuer_key)
    jwks, _ = _bundle_jwks(issuer_key, root_key)
    key = jwt.PyJWKSet.from_dict(jwks)[issuer_key.kid]
    header, payload, signature = token.split(".")
    tampered = (
        f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    )
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(tampered, key.key, algorithms=["EdDSA"])


def test_tongban_verifies_what_jwcrypto_signs(
    any_issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    certificate = _current_certificate()
    pem = any_issuer_key.to_encrypted_pkcs8(b"interop")
    private = jwcrypto_jwk.JWK.from_pem(pem, password=b"interop")
    signer = jwcrypto_jws.JWS(canonicalize(certificate.to_claims()))
    signer.add_signature(
        private,
        alg=any_issuer_key.alg.value,
        protected=json.dumps(
            {"alg": any_issuer_key.alg.value, "kid": any_issuer_key.kid, "typ": TYP_CERTIFICATE}
        ),
    )
    token = signer.serialize(compact=True)
    _, bundle = _bundle_jwks(any_issuer_key, root_key)
    verdict = Verifier.from_bundle(bundle, StatusList()).verify(token)
    assert verdict.valid, verdict.reasons
    assert verdict.certificate == certificate


def test_tongban_verifies_what_pyjwt_signs(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    certificate = _current_certificate()
    private = serialization.load_pem_private_key(issuer_key.to_encrypted_pkcs8(b"x"), b"x")
    assert isinstance(private, Ed25519PrivateKey)
    token = jwt.encode(
        certificate.to_claims(),
        private,
        algorithm="EdDSA",
        headers={"kid": issuer_key.kid, "typ": TYP_CERTIFICATE},
    )
    _, bundle = _bundle_jwks(issuer_key, root_key)
    verdict = Verifier.from_bundle(bundle, StatusList()).verify(token)
    assert verdict.valid, verdict.reasons
