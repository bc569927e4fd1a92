"""JWS compact serialization (RFC 7515 §7.1) in Tongban's strict profile.

A token is `b64url(header) "." b64url(payload) "." b64url(signature)`. The header is
`{"alg", "kid", "typ"}`; the payload is RFC 8785 canonical JSON. Parsing refuses
anything a careless verifier might be tricked by: `alg: none` and every algorithm
other than EdDSA, ES256 and SM3withSM2, `crit` extensions (none are understood), non-canonical
base64url, duplicate JSON members, and a `typ` other than the one expected, so that
a trust bundle can never be passed off as a certificate, nor the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple

from signing.base64url import b64url_decode, b64url_encode
from signing.canonical import JSONObject, JSONValue, canonicalize, loads_object
from signing.errors import CanonicalizationError, MalformedToken, SignatureInvalid
from signing.keys import Algorithm, PublicKey, SigningKey

TYP_CERTIFICATE = "tongban-cert+jws"
TYP_TRUST_BUNDLE = "tongban-trust-bundle+jws"
TYP_STATUS_LIST = "tongban-status-list+jws"

_ACCEPTED_ALGS = {alg.value: alg for alg in Algorithm}
_SIGNATURE_BYTES = 64  # Ed25519 (RFC 8032 §5.1.6), ES256 r||s (RFC 7518 §3.4), SM2 r||s
MAX_TOKEN_CHARS = 1 << 20
MAX_HEADER_CHARS = 1024  # ours are ~130; the bound also caps the header cache's memory


class CompactJWS(NamedTuple):
    """A parsed, not yet verified, compact JWS."""

    header: Mapping[str, JSONValue]
    payload: bytes
    signature: bytes
    signing_input: bytes
    alg: Algorithm
    kid: str
    typ: str

    def claims(self, *, reject_duplicates: bool = True) -> JSONObject:
        """The payload parsed as one strict JSON object (see `loads_object`).

        Raises:
            MalformedToken: the payload is not a strict JSON object.
        """
        try:
            return loads_object(self.payload, reject_duplicates=reject_duplicates)
        except CanonicalizationError as exc:
            raise MalformedToken(f"payload: {exc.rule}") from None


def sign_compact(payload: bytes, key: SigningKey, *, typ: str) -> str:
    """Sign `payload` (already canonical bytes) with `key` as a compact JWS.

    The protected header is the JCS form of `{"alg", "kid", "typ"}`.
    """
    header = canonicalize({"alg": key.alg.value, "kid": key.kid, "typ": typ})
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def parse_compact(token: str, *, typ: str) -> CompactJWS:
    """Split and decode a compact JWS; check the header; do not verify the signature.

    Raises:
        MalformedToken: not exactly three strict base64url parts; the header is not a
            JSON object; `alg` is missing, `none` or not EdDSA/ES256/SM3withSM2; `crit` or `b64` is
            present; `kid` is missing; `typ` is not `typ`; the signature is not 64 bytes;
            the token is over 1 MiB or its header over 1 KiB.
    """
    if type(token) is not str:
        raise MalformedToken("token must be text")
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedToken(f"token is longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken(f"compact JWS has 3 parts separated by '.', not {len(parts)}")
    encoded_header, encoded_payload, encoded_signature = parts
    header, alg, kid = _checked_header(encoded_header, typ)
    signature = _decode(encoded_signature, "signature")
    if len(signature) != _SIGNATURE_BYTES:
        raise MalformedToken(f"signature is {len(signature)} bytes, not {_SIGNATURE_BYTES}")
    payload = _decode(encoded_payload, "payload")
    return CompactJWS(
        header=header,
        payload=payload,
        signature=signature,
        signing_input=f"{encoded_header}.{encoded_payload}".encode("ascii"),
        alg=alg,
        kid=kid,
        typ=typ,
    )


def parse_header(token: str, *, typ: str) -> tuple[Algorithm, str]:
    """The `alg` and `kid` a compact JWS's header names, checked as `parse_compact`
    checks them; the payload and the signature are not decoded.

    Raises:
        MalformedToken: `token` is not text, or its header breaks a rule of `parse_compact`.
    """
    if type(token) is not str:
        raise MalformedToken("token must be text")
    encoded_header, dot, _ = token.partition(".")
    if not dot:
        raise MalformedToken("compact JWS has 3 parts separated by '.', not 1")
    _, alg, kid = _checked_header(encoded_header, typ)
    return alg, kid


def _checked_header(
    encoded_header: str, typ: str
) -> tuple[Mapping[str, JSONValue], Algorithm, str]:
    if len(encoded_header) > MAX_HEADER_CHARS:
        raise MalformedToken(f"header is longer than {MAX_HEADER_CHARS} characters")
    header, alg, kid = _parse_header(encoded_header)
    found_typ = header.get("typ")
    if found_typ != typ:
        raise MalformedToken(f"header: typ {found_typ!r} is not {typ!r}")
    return header, alg, kid


# An issuer key's tokens all share one header, so the parse is memoized (pure function).
@lru_cache(maxsize=1024)
def _parse_header(encoded_header: str) -> tuple[Mapping[str, JSONValue], Algorithm, str]:
    try:
        header = loads_object(_decode(encoded_header, "header"))
    except CanonicalizationError as exc:
        raise MalformedToken(f"header: {exc.rule}") from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedToken("header: 'alg' is missing")
    if alg.lower() == "none":
        raise MalformedToken("header: alg 'none' (an unsecured JWS) is never accepted")
    accepted = _ACCEPTED_ALGS.get(alg)
    if accepted is None:
        raise MalformedToken(
            f"header: alg {alg!r} is not accepted; only EdDSA, ES256 and SM3withSM2"
        )
    # RFC 7515 §4.1.11: a recipient must reject a JWS whose `crit` names an extension
    # it does not understand; Tongban understands none.
    if "crit" in header:
        raise MalformedToken("header: 'crit' names extensions this verifier does not support")
    if "b64" in header:  # RFC 7797 unencoded payloads are not part of the profile
        raise MalformedToken("header: 'b64' (RFC 7797) is not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise MalformedToken("header: 'kid' is missing")
    return MappingProxyType(header), accepted, kid


def verify_compact(token: str, key: PublicKey, *, typ: str) -> CompactJWS:
    """Parse `token` and verify it was signed by exactly `key`.

    Raises:
        MalformedToken: as `parse_compact`.
        SignatureInvalid: the header names another `kid` or `alg`, or the signature
            does not verify.
    """
    jws = parse_compact(token, typ=typ)
    if jws.kid != key.kid:
        raise SignatureInvalid(f"signed by key {jws.kid}, expected {key.kid}")
    if jws.alg is not key.alg:
        raise SignatureInvalid(f"header alg {jws.alg.value} does not match the key's {key.alg}")
    key.verify(jws.signature, jws.signing_input)
    return jws


def _decode(segment: str, part: str) -> bytes:
    try:
        return b64url_decode(segment)
    except ValueError as exc:
        raise MalformedToken(f"{part}: {exc}") from None
