"""Signing keys and public keys: Ed25519 (`EdDSA`, the default), ECDSA P-256 (`ES256`)
and SM2 over SM3 (`SM3withSM2`, GB/T 32918.2; see `signing.sm2`).

A `SigningKey` is anything with a `kid`, an `alg`, a public JWK and a `sign()` method,
so an HSM-backed key can stand in for the `SoftwareSigningKey` kept here. Signatures are
in JOSE form (RFC 7518 §3.4: ES256 and SM2 are the 64-byte `r || s`, not DER). The `kid` is the
RFC 7638 JWK thumbprint. Private keys leave this module only as encrypted PKCS#8.
"""

from __future__ import annotations

import base64
import hashlib
import os
import textwrap
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from domain.errors import InvalidRequest
from signing.base64url import b64url_decode, b64url_encode
from signing.canonical import JSONValue, canonicalize
from signing.errors import KeyMaterialError, SignatureInvalid, WrongPassphrase
from signing.sm2 import Sm2PrivateKey, Sm2PublicKey


class Algorithm(StrEnum):
    """JWS `alg` values Tongban signs and accepts (RFC 7518 §3.1, RFC 8037 §3.1).

    SM2 has no IANA JWS name; `SM3withSM2` is the name Chinese JOSE/JWT stacks use
    (BouncyCastle's and Hutool's algorithm name). `Algorithm("SM2")` is accepted as a
    shorthand where a person types it (CLI, configuration); tokens carry the full name.
    """

    EDDSA = "EdDSA"
    ES256 = "ES256"
    SM2 = "SM3withSM2"

    @classmethod
    def _missing_(cls, value: object) -> Algorithm | None:
        if isinstance(value, str):
            for member in cls:
                if value.lower() in (member.value.lower(), member.name.lower()):
                    return member
        return None

    @property
    def suite(self) -> str:
        """`gm` for SM2, `international` for the others."""
        return "gm" if self is Algorithm.SM2 else "international"


# RFC 7638 §3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
_P256_COORDINATE = 32
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 JWK thumbprint: base64url(SHA-256(JCS of the required members)).

    Raises:
        KeyMaterialError: `kty` is not OKP or EC, or a required member is missing.
    """
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise KeyMaterialError(f"unsupported JWK kty {jwk.get('kty')!r}")
    required: dict[str, JSONValue] = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise KeyMaterialError(f"JWK member {name!r} must be a string")
        required[name] = value
    # Required members are ASCII strings, so JCS is exactly RFC 7638 §3.3's form.
    return b64url_encode(hashlib.sha256(canonicalize(required)).digest())


@runtime_checkable
class SigningKey(Protocol):
    """What signing needs from a private key; an HSM binding implements the same."""

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        ...

    @property
    def alg(self) -> Algorithm:
        """The JWS algorithm this key signs with."""
        ...

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517), with `kid`, `alg` and `use`."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The JOSE-form signature of `data` (64 bytes for both algorithms)."""
        ...


PublicKeyObject = Ed25519PublicKey | ec.EllipticCurvePublicKey | Sm2PublicKey
PrivateKeyObject = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | Sm2PrivateKey


class PublicKey:
    """A verification key: the JWK, its `kid`, and the loaded key object, made once.

    Compared and hashed by `kid`, which is a hash of the key itself.
    """

    __slots__ = ("_alg", "_jwk", "_key", "_kid", "_verify")

    def __init__(self, key: PublicKeyObject) -> None:
        """Wrap a `cryptography` public key.

        Raises:
            KeyMaterialError: not an Ed25519, P-256 or SM2 key.
        """
        self._key = key
        self._verify: Callable[[bytes, bytes], None]
        if isinstance(key, Ed25519PublicKey):
            self._alg = Algorithm.EDDSA
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
            self._verify = key.verify
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            self._alg = Algorithm.ES256
            numbers = key.public_numbers()
            jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": b64url_encode(numbers.x.to_bytes(_P256_COORDINATE, "big")),
                "y": b64url_encode(numbers.y.to_bytes(_P256_COORDINATE, "big")),
            }
            self._verify = self._verify_es256
        elif isinstance(key, Sm2PublicKey):
            self._alg = Algorithm.SM2
            # The JWK form of the profile: EC / crv "SM2", 32-byte coordinates.
            jwk = {"kty": "EC", "crv": "SM2", "x": b64url_encode(key.x), "y": b64url_encode(key.y)}
            self._verify = key.verify
        else:
            raise KeyMaterialError(f"unsupported public key type {type(key).__name__}")
        self._kid = jwk_thumbprint(jwk)
        self._jwk = {**jwk, "kid": self._kid, "alg": self._alg.value, "use": "sig"}

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> PublicKey:
        """Load a public JWK: OKP/Ed25519, EC/P-256 or EC/SM2.

        `alg`, `use`, `key_ops` and `kid` are optional, but when present they must agree
        with the key (`kid` must be its RFC 7638 thumbprint).

        Raises:
            KeyMaterialError: private members present, unsupported type or curve,
                malformed coordinates, a point not on the curve, or a disagreeing member.
        """
        if not isinstance(jwk, Mapping):
            raise KeyMaterialError("a JWK must be a JSON object")
        if "d" in jwk:
            raise KeyMaterialError("JWK carries private key material ('d'); refusing it")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        key: PublicKeyObject
        if kty == "OKP" and crv == "Ed25519":
            key = Ed25519PublicKey.from_public_bytes(_coordinate(jwk, "x"))
        elif kty == "EC" and crv == "P-256":
            x = int.from_bytes(_coordinate(jwk, "x"), "big")
            y = int.from_bytes(_coordinate(jwk, "y"), "big")
            try:
                key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            except ValueError as exc:
                raise KeyMaterialError(f"JWK point is not on P-256: {exc}") from exc
        elif kty == "EC" and crv == "SM2":
            key = Sm2PublicKey(_coordinate(jwk, "x"), _coordinate(jwk, "y"))
        else:
            raise KeyMaterialError(f"unsupported JWK kty={kty!r} crv={crv!r}")
        public = cls(key)
        for member, expected in (("alg", public.alg.value), ("use", "sig"), ("kid", public.kid)):
            if member in jwk and jwk[member] != expected:
                raise KeyMaterialError(f"JWK {member}={jwk[member]!r} does not match {expected!r}")
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            raise KeyMaterialError("JWK key_ops does not allow 'verify'")
        return public

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint."""
        return self._kid

    @property
    def alg(self) -> Algorithm:
        """The one JWS algorithm this key verifies."""
        return self._alg

    def jwk(self) -> dict[str, str]:
        """The public JWK with `kid`, `alg` and `use` (a fresh dict each call)."""
        return dict(self._jwk)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check a JOSE-form signature over `data`.

        Raises:
            SignatureInvalid: the signature does not verify under this key.
        """
        try:
            self._verify(signature, data)
        except SignatureInvalid as exc:
            raise SignatureInvalid(f"signature does not verify with key {self._kid}") from exc
        except InvalidSignature:
            raise SignatureInvalid(f"signature does not verify with key {self._kid}") from None

    def _verify_es256(self, signature: bytes, data: bytes) -> None:
        if len(signature) != 2 * _P256_COORDINATE:
            raise InvalidSignature
        r = int.from_bytes(signature[:_P256_COORDINATE], "big")
        s = int.from_bytes(signature[_P256_COORDINATE:], "big")
        assert isinstance(self._key, ec.EllipticCurvePublicKey)
        self._key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)

    def __reduce__(self) -> tuple[Callable[[dict[str, str]], PublicKey], tuple[dict[str, str]]]:
        # Through the JWK: the loaded key object itself does not pickle.
        return (PublicKey.from_jwk, (self.jwk(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._kid == self._kid

    def __hash__(self) -> int:
        return hash(self._kid)

    def __repr__(self) -> str:
        return f"PublicKey(alg={self._alg.value!r}, kid={self._kid!r})"


def _coordinate(jwk: Mapping[str, object], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise KeyMaterialError(f"JWK member {member!r} must be a base64url string")
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise KeyMaterialError(f"JWK member {member!r}: {exc}") from None
    # RFC 8037 §2 (x is 32 bytes for Ed25519); RFC 7518 §6.2.1.2 (full-size coordinates).
    if len(raw) != _P256_COORDINATE:
        raise KeyMaterialError(f"JWK member {member!r} must decode to 32 bytes")
    return raw


# Encrypted PKCS#8 (RFC 5958 §3) with PBES2 (RFC 8018 §6.2): PBKDF2-HMAC-SHA256 and
# AES-256-CBC, written here because `BestAvailableEncryption` fixes PBKDF2 at 2048
# iterations; loading goes through `cryptography`, which reads any PBES2 parameters.
PBKDF2_ITERATIONS = 600_000  # OWASP 2023 figure for PBKDF2-HMAC-SHA256
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")  # 1.2.840.113549.1.5.12
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")  # 1.2.840.113549.2.9
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42
_DER_NULL = b"\x05\x00"
_PEM_LABEL = b"ENCRYPTED PRIVATE KEY"
_SM2_CURVE_OID_TEXT = "1.2.156.10197.1.301"


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        length = bytes([size])
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + body


def _sequence(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _octet_string(data: bytes) -> bytes:
    return _der(0x04, data)


def _unsigned_integer(value: int) -> bytes:
    # X.690 §8.3: two's complement, so one more byte than the bits need keeps it positive.
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _encrypt_pkcs8(plain_der: bytes, passphrase: bytes) -> bytes:
    salt, iv = os.urandom(16), os.urandom(16)
    kek = PBKDF2HMAC(hashes.SHA256(), 32, salt, PBKDF2_ITERATIONS).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    pbkdf2_params = _sequence(
        _octet_string(salt),
        _unsigned_integer(PBKDF2_ITERATIONS),
        _sequence(_OID_HMAC_SHA256, _DER_NULL),
    )
    pbes2_params = _sequence(
        _sequence(_OID_PBKDF2, pbkdf2_params),
        _sequence(_OID_AES256_CBC, _octet_string(iv)),
    )
    der = _sequence(_sequence(_OID_PBES2, pbes2_params), _octet_string(ciphertext))
    # RFC 7468 §11: the ENCRYPTED PRIVATE KEY label, 64-character lines.
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64)).encode("ascii")
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (_PEM_LABEL, body, _PEM_LABEL)


class SoftwareSigningKey:
    """A private signing key held in process memory.

    Its repr and str name only the algorithm and kid; the private key never leaves the
    object except through `to_encrypted_pkcs8`.
    """

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: PrivateKeyObject) -> None:
        """Wrap a `cryptography` private key.

        Raises:
            KeyMaterialError: not an Ed25519, P-256 or SM2 key.
        """
        self._private = private_key
        if isinstance(private_key, Sm2PrivateKey):
            self._public = PublicKey(private_key.public)
            return
        if not isinstance(private_key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"unsupported private key type {type(private_key).__name__}")
        self._public = PublicKey(private_key.public_key())

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self._public.kid

    @property
    def alg(self) -> Algorithm:
        """`EdDSA`, `ES256` or `SM3withSM2`, fixed by the key type."""
        return self._public.alg

    def public_key(self) -> PublicKey:
        """The matching verification key."""
        return self._public

    def public_jwk(self) -> dict[str, str]:
        """The public JWK with `kid`, `alg` and `use`."""
        return self._public.jwk()

    def sign(self, data: bytes) -> bytes:
        """The JOSE-form signature of `data`: Ed25519, or ES256 / SM2 as 64-byte `r || s`."""
        if isinstance(self._private, Ed25519PrivateKey | Sm2PrivateKey):
            return self._private.sign(data)
        r, s = decode_dss_signature(self._private.sign(data, _ECDSA_SHA256))
        return r.to_bytes(_P256_COORDINATE, "big") + s.to_bytes(_P256_COORDINATE, "big")

    def to_encrypted_pkcs8(self, passphrase: bytes) -> bytes:
        """PEM `ENCRYPTED PRIVATE KEY`: PBES2, PBKDF2-HMAC-SHA256 (600,000 rounds), AES-256-CBC.

        OpenSSL reads it (`openssl pkey -in key.pem`). An SM2 key is the PKCS#8 of
        id-ecPublicKey with the curve OID sm2p256v1, 1.2.156.10197.1.301.

        Raises:
            InvalidRequest: the passphrase is empty.
        """
        if not passphrase:
            raise InvalidRequest("passphrase", "must not be empty")
        if isinstance(self._private, Sm2PrivateKey):
            plain = self._private.pkcs8_der()
        else:
            plain = self._private.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        return _encrypt_pkcs8(plain, passphrase)

    @classmethod
    def from_encrypted_pkcs8(cls, data: bytes, passphrase: bytes) -> SoftwareSigningKey:
        """Load an encrypted PKCS#8 key, PEM (`ENCRYPTED PRIVATE KEY`) or DER.

        Raises:
            WrongPassphrase: the passphrase does not decrypt the key.
            KeyMaterialError: not an encrypted PKCS#8 key (an unencrypted key is refused
                too), or a key type other than Ed25519, P-256 and SM2.
        """
        if not passphrase:
            raise WrongPassphrase("empty passphrase")
        is_pem = data.lstrip().startswith(b"-----BEGIN ")
        if is_pem and not data.lstrip().startswith(b"-----BEGIN %s-----" % _PEM_LABEL):
            raise KeyMaterialError("PEM is not an 'ENCRYPTED PRIVATE KEY'")
        load = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
        try:
            key = load(data, passphrase)
        except TypeError as exc:  # cryptography: "Password was given but ... not encrypted"
            raise KeyMaterialError(
                "the key is not encrypted; refusing a clear private key"
            ) from exc
        except UnsupportedAlgorithm as exc:
            # `cryptography` decrypted the key but has no SM2 curve: it names the OID.
            if _SM2_CURVE_OID_TEXT in str(exc):
                return cls(Sm2PrivateKey.from_encrypted_pkcs8(data, passphrase, pem=is_pem))
            raise KeyMaterialError(f"unsupported key encryption: {exc}") from exc
        except ValueError as exc:
            # A well-formed encrypted key asks for a password (TypeError) when given
            # none; anything else means the bytes themselves are broken.
            try:
                load(data, None)
            except TypeError:
                raise WrongPassphrase("the passphrase does not decrypt this key") from None
            except (ValueError, UnsupportedAlgorithm):
                pass
            raise KeyMaterialError("not an encrypted PKCS#8 private key") from exc
        if isinstance(key, Ed25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            return cls(key)
        raise KeyMaterialError(f"unsupported private key type {type(key).__name__}")

    def __repr__(self) -> str:
        return f"SoftwareSigningKey(alg={self.alg.value!r}, kid={self.kid!r})"

    __str__ = __repr__


def generate(alg: Algorithm | str = Algorithm.EDDSA) -> SoftwareSigningKey:
    """A fresh software key for `alg` (`EdDSA`, the default, `ES256` or `SM3withSM2`).

    Raises:
        InvalidRequest: `alg` is none of them.
        KeyMaterialError: SM2 was asked for and OpenSSL 3 is missing.
    """
    if alg == Algorithm.EDDSA:
        return SoftwareSigningKey(Ed25519PrivateKey.generate())
    if alg == Algorithm.ES256:
        return SoftwareSigningKey(ec.generate_private_key(ec.SECP256R1()))
    if alg == Algorithm.SM2 or alg == "SM2":
        return SoftwareSigningKey(Sm2PrivateKey.generate())
    raise InvalidRequest(
        "alg", f"unsupported signing algorithm {alg!r}; use EdDSA, ES256 or SM3withSM2 (SM2)"
    )
