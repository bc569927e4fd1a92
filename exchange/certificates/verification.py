"""Online verification: whatever a verifier was shown, checked against the hub's own state.

A verifier presents a certificate id, a compact token, or the text of a QR code (the
token itself, or ``<hub>/v/<id>``). Ids are looked up in the store. The token is then
checked by the same `signing.Verifier` an offline verifier uses, built from the bundle
and status list the hub publishes. When the hub holds the certificate, its STATUS
result comes from the store (always current, and it says why: revoked with what
reason, superseded by which version) rather than from the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from certstore.certificates import CertificateStatus, CertificateStore, StoredCertificate
from domain.errors import InvalidRequest, NotFound
from exchange.certificates.publisher import PublishedTrust
from signing import (
    CheckName,
    CheckResult,
    QrReference,
    SuiteResult,
    Verdict,
    parse_certificate_id,
    parse_qr_text,
)
from signing.jws import MAX_TOKEN_CHARS
from signing.usage_copy import is_usage_copy
from signing.verifier import suite_result

_NOT_CHECKED = "not checked"


class PresentedKind(StrEnum):
    """What the verifier was shown."""

    CERTIFICATE_ID = "certificate_id"
    TOKEN = "token"  # noqa: S105  (a kind of input, not a secret)
    QR_TEXT = "qr_text"
    USAGE_COPY = "usage_copy"


@dataclass(frozen=True, slots=True)
class Presented:
    """A certificate as shown to a verifier."""

    kind: PresentedKind
    value: str


@dataclass(frozen=True, slots=True)
class OnlineVerdict:
    """A verdict, and the hub's own record of the certificate when it holds one."""

    verdict: Verdict
    stored: StoredCertificate | None
    verified_at: datetime
    # One per token checked: both of a dual-signed certificate looked up by id.
    suites: tuple[SuiteResult, ...] = field(default=())


def token_of(presented: Presented) -> str | None:
    """The token when it was presented itself (no store needed), else None.

    Raises:
        InvalidRequest: QR text that is neither a token nor a `<hub>/v/<id>` link.
    """
    if presented.kind in (PresentedKind.TOKEN, PresentedKind.USAGE_COPY):
        return presented.value
    if presented.kind is PresentedKind.QR_TEXT:
        scanned = parse_qr_text(presented.value)
        if not isinstance(scanned, QrReference):
            return scanned.token
    return None


def usage_copy_of(presented: Presented) -> str | None:
    """The usage copy token presented (as such, as a token or in QR text), else None.

    Raises:
        InvalidRequest: QR text that is neither a token nor a link the hub made.
    """
    if presented.kind is PresentedKind.USAGE_COPY:
        return presented.value
    token = token_of(presented)
    return token if token is not None and is_usage_copy(token) else None


def certificate_id_of(presented: Presented) -> str:
    """The certificate id a presented id or QR link names.

    Raises:
        InvalidRequest: the id (field `certificate_id` or `qr_text`) is malformed, or
            the QR text holds a token rather than a link.
    """
    if presented.kind is PresentedKind.CERTIFICATE_ID:
        parse_certificate_id(presented.value, "certificate_id")
        return presented.value
    scanned = parse_qr_text(presented.value)
    if not isinstance(scanned, QrReference):
        raise InvalidRequest("qr_text", "holds a token, not a link to a certificate")
    parse_certificate_id(scanned.short_id, "qr_text")
    return scanned.short_id


def check_presented(presented: Presented) -> None:
    """Refuse what cannot be a certificate before any work is done.

    Raises:
        InvalidRequest: empty, longer than a token may be, or a malformed id or QR text.
    """
    if not presented.value:
        raise InvalidRequest(presented.kind.value, "is empty")
    if len(presented.value) > MAX_TOKEN_CHARS:
        raise InvalidRequest(presented.kind.value, f"longer than {MAX_TOKEN_CHARS} characters")
    if token_of(presented) is None:
        certificate_id_of(presented)


class OnlineVerifier:
    """Verifies presented certificates with the hub's published trust and its store."""

    def __init__(self, store: CertificateStore) -> None:
        self._store = store

    def lookup(self, presented: Presented) -> tuple[str, StoredCertificate | None]:
        """(token, stored certificate) for what was presented. Reads the store for ids.

        Raises:
            InvalidRequest: malformed id or QR text.
            NotFound: the hub holds no certificate with that id.
            StoreError: the database failed.
        """
        token = token_of(presented)
        if token is not None:
            return token, None
        wanted = certificate_id_of(presented)
        try:
            stored = self._store.get(wanted)
        except NotFound:
            raise NotFound(f"this hub holds no certificate {wanted}") from None
        return stored.token, stored

    def find(self, certificate_id: str) -> StoredCertificate | None:
        """The stored certificate, or None. Raises `StoreError`."""
        try:
            return self._store.get(certificate_id)
        except NotFound:
            return None

    def explain(self, result: OnlineVerdict, token: str) -> OnlineVerdict:
        """`result` with a failed STATUS explained from the store, when the store holds
        this very token (revoked with what reason, superseded by which version).

        Raises:
            StoreError: the database failed.
        """
        wanted = needs_explaining(result.verdict)
        if wanted is None:
            return result
        stored = self.find(wanted)
        if stored is None or token not in stored.tokens:
            return result
        verdict = with_stored_status(result.verdict, token, stored)
        suites = (suite_result(token, verdict),)
        return OnlineVerdict(verdict, stored, result.verified_at, suites)

    @staticmethod
    def verify(
        token: str, trust: PublishedTrust, stored: StoredCertificate | None = None
    ) -> OnlineVerdict:
        """Run every check on `token`; with `stored`, STATUS is the store's, and every
        token of a dual-signed certificate is checked (a verifier accepts either).
        CPU only."""
        now = datetime.now(UTC).replace(microsecond=0)
        if stored is not None and stored.second_token is not None and token in stored.tokens:
            # The hub signed both tokens over one payload; each runs every check.
            verdicts = [
                with_stored_status(trust.verifier.verify(t, now=now), t, stored)
                for t in stored.tokens
            ]
            suites = tuple(suite_result(t, v) for t, v in zip(stored.tokens, verdicts, strict=True))
            chosen = next((v for v in verdicts if v.valid), verdicts[0])
            return OnlineVerdict(chosen, stored, now, suites)
        verdict = trust.verifier.verify(token, now=now)
        if stored is not None:
            verdict = with_stored_status(verdict, token, stored)
        return OnlineVerdict(verdict, stored, now, (suite_result(token, verdict),))


def needs_explaining(verdict: Verdict) -> str | None:
    """The certificate id whose STATUS failure the store can explain, else None."""
    if verdict.certificate is None:
        return None
    status = verdict.result(CheckName.STATUS)
    if status.passed or status.reason.startswith(_NOT_CHECKED):
        return None
    return verdict.certificate.id


def with_stored_status(verdict: Verdict, token: str, stored: StoredCertificate) -> Verdict:
    """`verdict` with its STATUS result taken from the store's record of the certificate.

    Only when `token` is exactly the token the hub stored; a check not run (an earlier
    one failed) stays as it was.
    """
    if verdict.certificate is None or token not in stored.tokens:
        return verdict
    status = verdict.result(CheckName.STATUS)
    if status.reason.startswith(_NOT_CHECKED):
        return verdict
    since = stored.status_changed_at.strftime("%Y-%m-%d %H:%M:%SZ")
    if stored.status is CertificateStatus.VALID:
        result = CheckResult(CheckName.STATUS, True, "neither revoked nor suspended")
    elif stored.status is CertificateStatus.REVOKED:
        result = CheckResult(CheckName.STATUS, False, f"revoked on {since}: {stored.status_reason}")
    elif stored.status is CertificateStatus.SUPERSEDED:
        result = CheckResult(
            CheckName.STATUS,
            False,
            f"superseded by {stored.successor_id} on {since}: {stored.status_reason}",
        )
    else:
        result = CheckResult(
            CheckName.STATUS, False, f"suspended since {since}: {stored.status_reason}"
        )
    checks = tuple(result if c.name is CheckName.STATUS else c for c in verdict.checks)
    return replace(verdict, valid=all(c.passed for c in checks), checks=checks)
