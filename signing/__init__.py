"""Tongban's signing core: keys, certificate envelopes, trust bundles, status lists, verifier.

Pure: no database, no network, no files. Callers read key files and fetch bundles, and
hand bytes and objects in.
"""

from signing.canonical import JSONObject, JSONValue, canonicalize, loads_object
from signing.certificate import (
    CERTIFICATE_ID_PREFIX,
    Certificate,
    CertificateId,
    FrozenFields,
    certificate_id,
    iso7064_mod37_36,
    parse_certificate_id,
)
from signing.errors import (
    CanonicalizationError,
    DocumentExpired,
    DocumentRollback,
    KeyMaterialError,
    MalformedDocument,
    MalformedToken,
    SignatureInvalid,
    WrongPassphrase,
)
from signing.jws import (
    TYP_CERTIFICATE,
    TYP_STATUS_LIST,
    TYP_TRUST_BUNDLE,
    CompactJWS,
    parse_compact,
    sign_compact,
    verify_compact,
)
from signing.keys import (
    Algorithm,
    PublicKey,
    SigningKey,
    SoftwareSigningKey,
    generate,
    jwk_thumbprint,
)
from signing.qr import QR_MAX_TOKEN_LENGTH, QrReference, QrToken, parse_qr_text, qr_payload
from signing.status_list import (
    MIN_ENTRIES,
    StatusList,
    StatusPurpose,
    decode_bitstring,
    encode_bitstring,
)
from signing.trust import KeyRing, KeyStatus, TrustBundle, TrustedKey
from signing.verifier import (
    DEFAULT_CHECKS,
    CertificateInvalid,
    Check,
    CheckName,
    CheckResult,
    DualVerdict,
    SuiteResult,
    Verdict,
    VerificationContext,
    Verifier,
)

__all__ = [
    "CERTIFICATE_ID_PREFIX",
    "DEFAULT_CHECKS",
    "MIN_ENTRIES",
    "QR_MAX_TOKEN_LENGTH",
    "TYP_CERTIFICATE",
    "TYP_STATUS_LIST",
    "TYP_TRUST_BUNDLE",
    "Algorithm",
    "CanonicalizationError",
    "Certificate",
    "CertificateId",
    "CertificateInvalid",
    "Check",
    "CheckName",
    "CheckResult",
    "CompactJWS",
    "DocumentExpired",
    "DocumentRollback",
    "DualVerdict",
    "FrozenFields",
    "JSONObject",
    "JSONValue",
    "KeyMaterialError",
    "KeyRing",
    "KeyStatus",
    "MalformedDocument",
    "MalformedToken",
    "PublicKey",
    "QrReference",
    "QrToken",
    "SignatureInvalid",
    "SigningKey",
    "SoftwareSigningKey",
    "StatusList",
    "StatusPurpose",
    "SuiteResult",
    "TrustBundle",
    "TrustedKey",
    "Verdict",
    "VerificationContext",
    "Verifier",
    "WrongPassphrase",
    "canonicalize",
    "certificate_id",
    "decode_bitstring",
    "encode_bitstring",
    "generate",
    "iso7064_mod37_36",
    "jwk_thumbprint",
    "loads_object",
    "parse_certificate_id",
    "parse_compact",
    "parse_qr_text",
    "qr_payload",
    "sign_compact",
    "verify_compact",
]
