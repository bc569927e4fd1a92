"""Usage copies (加注件): a certificate stamped for one use by one organization.

A hall that uses a holder's certificate receives a usage copy: a JWS (typ
`tongban-usage-copy+jws`) signed by the hub root key over canonical JSON claims that
name the certificate (its id and the SHA-256 of its token), the using organization,
the case, the use cause (用证事由) and a validity window that never outlasts the
certificate's::

    {"usage_copy_id": "UC-...", "certificate_id": "1.2.156.3005.2...",
     "certificate_sha256": "<base64url>",
     "type_code": "...", "type_name": "营业执照", "holder_masked": "9135********0Y43",
     "issuer_department": "...", "issuer_uscc": "...",
     "user_organization": "<USCC>", "user_system": "window-1",
     "case_id": "...", "use_cause": "...",
     "issued_at": "...Z", "valid_from": "...Z", "valid_until": "...Z",
     "iat": ..., "nbf": ..., "exp": ...}

The copy does not repeat the certificate: a verifier checks it together with the
certificate's own token (the PDF carries both; the hub looks its own up). Verifying a
copy runs the copy's checks (INTEGRITY, SIGNATURE by the pinned root key,
CERTIFICATE_MATCH, VALIDITY_WINDOW) and then every check of the certificate with the
ordinary `Verifier`, so a revoked certificate fails every copy made of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import InvalidRequest, TongbanError
from signing.base64url import b64url_encode
from signing.canonical import JSONObject, canonicalize
from signing.errors import SignatureInvalid
from signing.jws import parse_compact, sign_compact
from signing.keys import PublicKey, SigningKey
from signing.timestamps import format_rfc3339, parse_rfc3339, to_utc_second
from signing.verifier import Verdict, Verifier

TYP_USAGE_COPY = "tongban-usage-copy+jws"
USAGE_COPY_PREFIX = "UC-"
_TEXT_CLAIMS = (
    "usage_copy_id",
    "certificate_id",
    "certificate_sha256",
    "type_code",
    "type_name",
    "holder_masked",
    "issuer_department",
    "issuer_uscc",
    "user_organization",
    "user_system",
    "case_id",
    "use_cause",
)


def token_sha256(token: str) -> str:
    """The base64url SHA-256 of a compact token, as a usage copy names its certificate."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


def is_usage_copy(token: str) -> bool:
    """True when `token` is a compact JWS whose header says it is a usage copy."""
    try:
        parse_compact(token, typ=TYP_USAGE_COPY)
    except TongbanError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageCopy:
    """What a usage copy says. Times are UTC whole seconds.

    Raises (on construction):
        InvalidRequest: a member is empty or the window is empty.
    """

    usage_copy_id: str
    certificate_id: str
    certificate_sha256: str
    type_code: str
    type_name: str
    holder_masked: str
    issuer_department: str
    issuer_uscc: str
    user_organization: str
    user_system: str
    case_id: str
    use_cause: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime

    def __post_init__(self) -> None:
        for name in _TEXT_CLAIMS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(name, "must be non-empty text")
        for name in ("issued_at", "valid_from", "valid_until"):
            object.__setattr__(self, name, to_utc_second(getattr(self, name), name))
        if self.valid_until <= self.valid_from:
            raise InvalidRequest("valid_until", "must be later than valid_from")

    @property
    def user(self) -> str:
        """``<USCC>/<system>``: the organization and system the copy is for."""
        return f"{self.user_organization}/{self.user_system}"

    @property
    def stamp_text(self) -> str:
        """The stamp a usage copy carries: 仅供 … 办理 … 使用，有效期至 …"""
        until = self.valid_until.strftime("%Y-%m-%d %H:%M UTC")
        return f"仅供 {self.user} 办理 {self.use_cause}（{self.case_id}）使用，有效期至 {until}"

    def to_claims(self) -> JSONObject:
        """The JSON claims the copy is signed as."""
        claims: JSONObject = {name: getattr(self, name) for name in _TEXT_CLAIMS}
        for name, numeric in (("issued_at", "iat"), ("valid_from", "nbf"), ("valid_until", "exp")):
            moment: datetime = getattr(self, name)
            claims[name] = format_rfc3339(moment)
            claims[numeric] = int(moment.timestamp())
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> UsageCopy:
        """Parse signed claims.

        Raises:
            InvalidRequest: a claim is missing or malformed (the claim is named).
        """
        texts = {}
        for name in _TEXT_CLAIMS:
            value = claims.get(name)
            if not isinstance(value, str):
                raise InvalidRequest(name, "is missing or not text")
            texts[name] = value
        times = {
            name: parse_rfc3339(claims.get(name), name)
            for name in ("issued_at", "valid_from", "valid_until")
        }
        for name, numeric in (("issued_at", "iat"), ("valid_from", "nbf"), ("valid_until", "exp")):
            if claims.get(numeric) != int(times[name].timestamp()):
                raise InvalidRequest(numeric, f"disagrees with {name}")
        return cls(**texts, **times)  # type: ignore[arg-type]  # names checked above

    def sign(self, root_key: SigningKey) -> str:
        """The copy as a compact JWS signed by the hub root key."""
        return sign_compact(canonicalize(self.to_claims()), root_key, typ=TYP_USAGE_COPY)


class CopyCheckName(StrEnum):
    """The checks of the copy itself, in the order they run."""

    INTEGRITY = "INTEGRITY"
    SIGNATURE = "SIGNATURE"
    CERTIFICATE_MATCH = "CERTIFICATE_MATCH"
    VALIDITY_WINDOW = "VALIDITY_WINDOW"


@dataclass(frozen=True, slots=True)
class CopyCheckResult:
    """One check of the copy; `reason` says why it failed (or what passing means)."""

    name: CopyCheckName
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class UsageCopyVerdict:
    """The copy's own checks and the certificate's verdict: valid only if all passed.

    `usage_copy` is what the copy states whenever INTEGRITY passed; like the
    certificate in `certificate`, it is authentic only when `valid` is true.
    `certificate` is None when no certificate token was at hand.
    """

    valid: bool
    checks: tuple[CopyCheckResult, ...]
    usage_copy: UsageCopy | None
    certificate: Verdict | None

    @property
    def reasons(self) -> tuple[str, ...]:
        """`"<CHECK>: <reason>"` for every failed check, the copy's then the certificate's."""
        own = tuple(f"COPY {c.name}: {c.reason}" for c in self.checks if not c.passed)
        return own + (self.certificate.reasons if self.certificate is not None else ())


def verify_usage_copy(
    token: str,
    certificate_token: str | None,
    *,
    root: PublicKey,
    certificate_verifier: Verifier,
    now: datetime,
) -> UsageCopyVerdict:
    """Run every check of a usage copy and of its certificate; never raises for bad input.

    `root` is the pinned hub root key; `certificate_verifier` checks the certificate
    (trust bundle and status list, as for any certificate). Without a
    `certificate_token` CERTIFICATE_MATCH fails and the certificate is not checked.
    """
    now = to_utc_second(now, "now")
    checks: list[CopyCheckResult] = []
    copy: UsageCopy | None = None
    signature_ok = False
    try:
        jws = parse_compact(token, typ=TYP_USAGE_COPY)
        copy = UsageCopy.from_claims(jws.claims())
    except InvalidRequest as exc:
        checks.append(_fail(CopyCheckName.INTEGRITY, f"usage copy claims: {exc.message}"))
    except TongbanError as exc:
        checks.append(_fail(CopyCheckName.INTEGRITY, exc.message))
    else:
        checks.append(_pass(CopyCheckName.INTEGRITY, "token is a well-formed usage copy JWS"))
        if jws.kid != root.kid:
            checks.append(
                _fail(CopyCheckName.SIGNATURE, f"signed by {jws.kid}, not the hub root key")
            )
        elif jws.alg is not root.alg:
            checks.append(_fail(CopyCheckName.SIGNATURE, f"header alg {jws.alg} is not the root's"))
        else:
            try:
                root.verify(jws.signature, jws.signing_input)
            except SignatureInvalid as exc:
                checks.append(_fail(CopyCheckName.SIGNATURE, exc.message))
            else:
                signature_ok = True
                checks.append(_pass(CopyCheckName.SIGNATURE, "signed by the hub root key"))
    certificate_verdict: Verdict | None = None
    if copy is None or not signature_ok:
        failed = "INTEGRITY" if copy is None else "SIGNATURE"
        for name in (CopyCheckName.CERTIFICATE_MATCH, CopyCheckName.VALIDITY_WINDOW):
            checks.append(_fail(name, f"not checked: {failed} failed"))
        if copy is None:
            checks.insert(1, _fail(CopyCheckName.SIGNATURE, "not checked: INTEGRITY failed"))
    else:
        if certificate_token is None:
            checks.append(
                _fail(CopyCheckName.CERTIFICATE_MATCH, "the certificate's token is not at hand")
            )
        else:
            certificate_verdict = certificate_verifier.verify(certificate_token, now=now)
            checks.append(_match(copy, certificate_token, certificate_verdict))
        checks.append(_window(copy, now))
    valid = all(c.passed for c in checks) and (
        certificate_verdict is not None and certificate_verdict.valid
    )
    return UsageCopyVerdict(valid, tuple(checks), copy, certificate_verdict)


def _match(copy: UsageCopy, certificate_token: str, verdict: Verdict) -> CopyCheckResult:
    if token_sha256(certificate_token) != copy.certificate_sha256:
        return _fail(
            CopyCheckName.CERTIFICATE_MATCH, "the certificate token is not the one the copy names"
        )
    if verdict.certificate is not None and verdict.certificate.id != copy.certificate_id:
        return _fail(CopyCheckName.CERTIFICATE_MATCH, "the certificate id is not the copy's")
    return _pass(CopyCheckName.CERTIFICATE_MATCH, f"names certificate {copy.certificate_id}")


def _window(copy: UsageCopy, now: datetime) -> CopyCheckResult:
    if now < copy.valid_from:
        return _fail(
            CopyCheckName.VALIDITY_WINDOW, f"not valid before {format_rfc3339(copy.valid_from)}"
        )
    if now >= copy.valid_until:
        expired = f"expired at {format_rfc3339(copy.valid_until)}"
        return _fail(CopyCheckName.VALIDITY_WINDOW, expired)
    return _pass(CopyCheckName.VALIDITY_WINDOW, f"valid until {format_rfc3339(copy.valid_until)}")


def _pass(name: CopyCheckName, reason: str) -> CopyCheckResult:
    return CopyCheckResult(name, True, reason)


def _fail(name: CopyCheckName, reason: str) -> CopyCheckResult:
    return CopyCheckResult(name, False, reason)
