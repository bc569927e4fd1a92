"""A hall's use of certificates: usage copies (加注件), holder queries, documents.

A caller *may use* a certificate when its policy names the certificate's type under
`certificate_types` (or ``*``), or when it is the certificate's issuer; an anonymous
dev-mode caller may use every one. A usage copy is made only of a certificate that is
valid now (not revoked, suspended, superseded or expired), for a case id and a use
cause the caller's policy allows, and is valid for the type's
`usage_copy_validity_days` (30 by default, or fewer when asked) and never beyond the
certificate. Making one is recorded in the audit trail under the holder as a use of
the certificate (CERT_USE) with the case and the cause; so is a holder query
(CERT_HOLDER_QUERY). Nothing here touches gRPC: the servicer and the HTTP API call it
on a worker thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from certstore.certificates import (
    CertificateStatus,
    CertificateStore,
    HolderQuery,
    StoredCertificate,
)
from domain.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TongbanError,
    Unauthenticated,
)
from domain.subjects import SubjectKey, parse_key
from exchange.audit import AuditTrail
from exchange.auth.policy import Caller, Grant
from exchange.certificates.documents import (
    CERTIFICATE_ATTACHMENT,
    SECOND_CERTIFICATE_ATTACHMENT,
    USAGE_COPY_ATTACHMENT,
    certificate_content,
    holder_text,
    render_pdf,
    usage_copy_content,
)
from exchange.certificates.keys import KeyManager
from exchange.certificates.publisher import PublishedTrust
from exchange.certificates.types import CertificateTypes
from exchange.certificates.verification import with_stored_status
from signing import QR_MAX_TOKEN_LENGTH, PublicKey, parse_certificate_id, parse_compact
from signing.usage_copy import (
    TYP_USAGE_COPY,
    USAGE_COPY_PREFIX,
    UsageCopy,
    UsageCopyVerdict,
    token_sha256,
    verify_usage_copy,
)

MAX_CASE_ID_CHARS = 128
MAX_USE_CAUSE_CHARS = 200


@dataclass(frozen=True, slots=True)
class UsageCopyRequest:
    """A hall asks to use a certificate for one case and cause."""

    certificate_id: str
    case_id: str
    use_cause: str
    # 0: as long as the type allows (never beyond the certificate).
    validity_days: int = 0


@dataclass(frozen=True, slots=True)
class IssuedUsageCopy:
    """A signed usage copy and the certificate it was made of."""

    usage_copy: UsageCopy
    token: str
    certificate: StoredCertificate


@dataclass(frozen=True, slots=True)
class HolderSearch:
    """A holder query: whose certificates, for which cause; one page of them."""

    holder: SubjectKey
    use_cause: str
    case_id: str = ""
    type_code: str | None = None
    limit: int = 50
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class HolderPage:
    """Certificates the caller may use, and where the scan stopped (None: the end)."""

    certificates: list[StoredCertificate]
    last_scanned: StoredCertificate | None


@dataclass(frozen=True, slots=True)
class OnlineCopyVerdict:
    """A usage copy's verdict, with the hub's record of its certificate when held."""

    verdict: UsageCopyVerdict
    stored: StoredCertificate | None
    verified_at: datetime


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _required_text(value: str, field: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise InvalidRequest(field, "is required")
    if len(value) > limit:
        raise InvalidRequest(field, f"at most {limit} characters")
    if any(ord(char) < 32 for char in value):
        raise InvalidRequest(field, "must not hold control characters")
    return value


def claimed_certificate_id(copy_token: str) -> str | None:
    """The certificate id a usage copy claims to name (unverified), or None."""
    try:
        claims = parse_compact(copy_token, typ=TYP_USAGE_COPY).claims()
    except TongbanError:  # a malformed copy: its verification says why
        return None
    claimed = claims.get("certificate_id")
    return claimed if isinstance(claimed, str) else None


class CertificateUse:
    """Usage copies, holder queries and documents for the callers that use certificates."""

    def __init__(
        self,
        store: CertificateStore,
        types: CertificateTypes,
        keys: KeyManager,
        audit: AuditTrail,
        *,
        public_url: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.types = types
        self.keys = keys
        self.audit = audit
        self.public_url = public_url
        self._clock = clock

    # -- rights --------------------------------------------------------------------

    @staticmethod
    def may_use(caller: Caller, grant: Grant, stored: StoredCertificate) -> bool:
        """True when `caller` may use (read, make usage copies of) the certificate."""
        certificate = stored.certificate
        return (
            caller.anonymous_dev
            or caller.organization == certificate.issuer_uscc
            or grant.may_use_certificates_of(certificate.type_code)
        )

    def _readable(self, certificate_id: str, caller: Caller, grant: Grant) -> StoredCertificate:
        parse_certificate_id(certificate_id)
        stored = self.store.get(certificate_id)
        if not self.may_use(caller, grant, stored):
            raise PermissionDenied(
                f"{caller} may not use certificates of type {stored.certificate.type_code}"
            )
        return stored

    # -- usage copies --------------------------------------------------------------

    def issue_usage_copy(
        self, request: UsageCopyRequest, caller: Caller, grant: Grant
    ) -> IssuedUsageCopy:
        """Sign a usage copy of a certificate for the caller's case and cause; audit it.

        Raises:
            Unauthenticated: the caller is anonymous (a copy must name its user).
            InvalidRequest: the id is malformed, the case id or use cause is missing or
                too long, or `validity_days` is negative or beyond the type's.
            NotFound: no such certificate.
            PermissionDenied: the caller may not use this certificate, or its policy
                does not allow this use cause.
            FailedPrecondition: the certificate is not valid now (revoked, suspended,
                superseded, expired or not yet valid), or the hub has no root key.
            StoreError: the database failed.
        """
        if not caller.organization:
            raise Unauthenticated(
                "a usage copy names the organization that uses it: call with a client "
                "certificate (or, in dev mode, a dev token)"
            )
        case_id = _required_text(request.case_id, "case_id", MAX_CASE_ID_CHARS)
        use_cause = _required_text(request.use_cause, "use_cause", MAX_USE_CAUSE_CHARS)
        if request.validity_days < 0:
            raise InvalidRequest("validity_days", "must not be negative")
        stored = self._readable(request.certificate_id, caller, grant)
        if not grant.allows_reason(use_cause):
            raise PermissionDenied(f"{caller} may not use certificates for {use_cause!r}")
        certificate = stored.certificate
        now = _second(self._clock())
        _require_usable(stored, now)
        kind = self.types.find(certificate.type_code)
        longest = kind.usage_copy_validity if kind is not None else timedelta(days=30)
        if request.validity_days:
            asked = timedelta(days=request.validity_days)
            if asked > longest:
                raise InvalidRequest(
                    "validity_days", f"at most {longest.days} for {certificate.type_name}"
                )
            longest = asked
        until = now + longest
        if certificate.valid_until is not None:
            until = min(until, certificate.valid_until)
        root = self.keys.root()
        if root is None:
            raise FailedPrecondition("the hub has no root key; run: tongban keys generate --root")
        masked = kind.layout.mask_holder if kind is not None else True
        copy = UsageCopy(
            usage_copy_id=f"{USAGE_COPY_PREFIX}{uuid.uuid4().hex.upper()}",
            certificate_id=certificate.id,
            certificate_sha256=token_sha256(stored.token),
            type_code=certificate.type_code,
            type_name=certificate.type_name,
            holder_masked=holder_text(certificate, masked=masked),
            issuer_department=certificate.issuer_department,
            issuer_uscc=certificate.issuer_uscc,
            user_organization=caller.organization,
            user_system=caller.system,
            case_id=case_id,
            use_cause=use_cause,
            issued_at=now,
            valid_from=now,
            valid_until=until,
        )
        token = copy.sign(self.keys.open(root))
        entry = self.audit.entry(
            caller,
            "CERT_USE",
            "OK",
            subject=parse_key(certificate.holder_kind, certificate.holder_value),
            certificate_id=certificate.id,
            usage_copy_id=copy.usage_copy_id,
            record_types=[f"certificate.{certificate.type_code}"],
            purpose={"case_id": case_id, "reason": use_cause},
            valid_until=copy.valid_until.isoformat(),
        )
        with self.store.write() as write:
            write.append_audit([entry])
        return IssuedUsageCopy(copy, token, stored)

    def verify_usage_copy(
        self, token: str, certificate_token: str | None, trust: PublishedTrust
    ) -> OnlineCopyVerdict:
        """Verify a usage copy online: its certificate from the store when not given,
        and the certificate's STATUS from the store when it holds that very token.

        Raises:
            FailedPrecondition: the hub has no root key (nothing can be verified).
            StoreError: the database failed.
        """
        if trust.root_jwk is None:
            raise FailedPrecondition("the hub has no root key; nothing can be verified")
        now = _second(datetime.now(UTC))
        stored = None
        claimed = claimed_certificate_id(token)
        if claimed is not None:
            try:
                parse_certificate_id(claimed)
                stored = self.store.get(claimed)
            except (InvalidRequest, NotFound):
                stored = None
        if certificate_token is None and stored is not None:
            certificate_token = stored.token
        verdict = verify_usage_copy(
            token,
            certificate_token,
            root=PublicKey.from_jwk(trust.root_jwk),
            certificate_verifier=trust.verifier,
            now=now,
        )
        if stored is not None and verdict.certificate is not None and certificate_token:
            checked = with_stored_status(verdict.certificate, certificate_token, stored)
            verdict = replace(
                verdict,
                certificate=checked,
                valid=checked.valid and all(c.passed for c in verdict.checks),
            )
        return OnlineCopyVerdict(verdict, stored, now)

    # -- holder queries ------------------------------------------------------------

    def by_holder(self, search: HolderSearch, caller: Caller, grant: Grant) -> HolderPage:
        """A page of the holder's valid certificates the caller may use; audited.

        Raises:
            InvalidRequest: the use cause is missing or too long, or the case id too long.
            PermissionDenied: the caller's policy does not allow this use cause.
            StoreError: the database failed.
        """
        use_cause = _required_text(search.use_cause, "use_cause", MAX_USE_CAUSE_CHARS)
        if len(search.case_id) > MAX_CASE_ID_CHARS:
            raise InvalidRequest("case_id", f"at most {MAX_CASE_ID_CHARS} characters")
        if search.type_code is not None:
            self.types.get(search.type_code)
        if not grant.allows_reason(use_cause):
            raise PermissionDenied(f"{caller} may not use certificates for {use_cause!r}")
        scanned = self.store.list_by_holder(
            HolderQuery(
                holder_kind=search.holder.kind.value,
                holder_value=search.holder.value,
                limit=search.limit + 1,
                type_code=search.type_code,
                after=search.after,
            )
        )
        now = _second(self._clock())
        page = scanned[: search.limit]
        usable = [
            s for s in page if self.may_use(caller, grant, s) and _usable_problem(s, now) is None
        ]
        entry = self.audit.entry(
            caller,
            "CERT_HOLDER_QUERY",
            "OK",
            subject=search.holder,
            certificates=len(usable),
            record_types=sorted({f"certificate.{s.certificate.type_code}" for s in usable}),
            purpose={"case_id": search.case_id, "reason": use_cause},
        )
        with self.store.write() as write:
            write.append_audit([entry])
        last = page[-1] if len(scanned) > search.limit else None
        return HolderPage(usable, last)

    # -- documents -----------------------------------------------------------------

    def certificate_qr_text(self, stored: StoredCertificate) -> str:
        """What a certificate document's QR code holds: the verification page link
        (``<public_url>/v/<id>``), else the token itself when it fits.

        Raises:
            FailedPrecondition: no `signing.public_url` and the token is too long.
        """
        if self.public_url is not None:
            return f"{self.public_url}/v/{stored.id}"
        if len(stored.token) <= QR_MAX_TOKEN_LENGTH:
            return stored.token
        raise FailedPrecondition(
            "the token is too long for a QR code; set signing.public_url to link to it"
        )

    def copy_qr_text(self, token: str) -> str:
        """What a usage copy's QR code holds: ``<public_url>/u/<copy token>``, else the
        copy token (the page and `tongban verify` accept both)."""
        return token if self.public_url is None else f"{self.public_url}/u/{token}"

    def render_certificate(
        self, certificate_id: str, caller: Caller, grant: Grant
    ) -> tuple[bytes, StoredCertificate]:
        """The certificate as a PDF document, and the certificate; audited (CERT_RENDER).

        Raises:
            InvalidRequest: a malformed id.
            NotFound: no such certificate.
            PermissionDenied: the caller may not use this certificate.
            FailedPrecondition: its token is too long for a QR code and no public URL
                is configured.
            StoreError: the database failed.
        """
        stored = self._readable(certificate_id, caller, grant)
        certificate = stored.certificate
        content = certificate_content(
            certificate, self.types.find(certificate.type_code), self.certificate_qr_text(stored)
        )
        pdf = render_pdf(content, certificate_attachments(stored))
        entry = self.audit.entry(
            caller,
            "CERT_RENDER",
            "OK",
            subject=parse_key(certificate.holder_kind, certificate.holder_value),
            certificate_id=certificate.id,
            record_types=[f"certificate.{certificate.type_code}"],
        )
        with self.store.write() as write:
            write.append_audit([entry])
        return pdf, stored

    def render_usage_copy(self, issued: IssuedUsageCopy) -> bytes:
        """The usage copy as a PDF: stamped, watermarked, both tokens embedded."""
        certificate = issued.certificate.certificate
        content = usage_copy_content(
            issued.usage_copy,
            certificate,
            self.types.find(certificate.type_code),
            self.copy_qr_text(issued.token),
        )
        return render_pdf(
            content,
            [(USAGE_COPY_ATTACHMENT, issued.token), *certificate_attachments(issued.certificate)],
        )


def certificate_attachments(stored: StoredCertificate) -> list[tuple[str, str]]:
    """The certificate's tokens as PDF attachments: both of a dual-signed one."""
    attachments = [(CERTIFICATE_ATTACHMENT, stored.token)]
    if stored.second_token:
        attachments.append((SECOND_CERTIFICATE_ATTACHMENT, stored.second_token))
    return attachments


def _usable_problem(stored: StoredCertificate, now: datetime) -> str | None:
    """Why the certificate cannot be used now, or None."""
    certificate = stored.certificate
    since = stored.status_changed_at.strftime("%Y-%m-%d %H:%M:%SZ")
    if stored.status is CertificateStatus.REVOKED:
        return f"{certificate.id} was revoked on {since} ({stored.status_reason})"
    if stored.status is CertificateStatus.SUPERSEDED:
        return f"{certificate.id} was superseded by {stored.successor_id} on {since}"
    if stored.status is CertificateStatus.SUSPENDED:
        return f"{certificate.id} is suspended since {since}"
    if now < certificate.valid_from:
        return f"{certificate.id} is not valid before {certificate.valid_from.isoformat()}"
    if certificate.valid_until is not None and now >= certificate.valid_until:
        return f"{certificate.id} expired at {certificate.valid_until.isoformat()}"
    return None


def _require_usable(stored: StoredCertificate, now: datetime) -> None:
    problem = _usable_problem(stored, now)
    if problem is not None:
        raise FailedPrecondition(f"no usage copy can be made: {problem}")
