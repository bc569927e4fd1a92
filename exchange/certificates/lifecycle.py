"""Issuing and managing e-certificates: one transaction per action, audit entry included.

Every action runs in one store transaction that holds everything it changes and its
audit entry: a certificate is signed before it is stored and stored with its token, a
status change and the status-list revision move together, and a failure anywhere rolls
all of it back. Only the issuing department (by USCC) may act on its certificates; an
anonymous dev-mode caller may do everything.

Issue and Supersede are idempotent per (issuer, request id): a retry returns the
certificate made the first time. Retries are seen even when they race the original,
because issuance first locks the hub-wide state row, on every node.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from certstore.audit import AuditEntry
from certstore.certificates import (
    CertificateStatus,
    CertificateStore,
    CertificateWrite,
    HolderQuery,
    StoredCertificate,
    StoredKey,
)
from domain.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from domain.records import canonical_json
from domain.subjects import SubjectKey, parse_key
from exchange.audit import AuditTrail
from exchange.auth.policy import Caller
from exchange.certificates.keys import KeyManager
from exchange.certificates.types import CertificateType, CertificateTypes
from signing import (
    Certificate,
    SigningKey,
    certificate_id,
    parse_certificate_id,
)
from signing.certificate import MAX_VERSION
from signing.status_list import MAX_ENTRIES

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
_SERIAL_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Random, not sequential: ids are shown to verifiers, and a guessable id would let
# anyone read certificates one after another through Verify.
SERIAL_LENGTH = 16
MAX_REASON_CHARS = 1000


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """What an issuer asks for. `issuer_uscc` may be empty: the type's issuer."""

    request_id: str
    type_code: str
    holder: SubjectKey
    fields: Mapping[str, object]
    issuer_uscc: str = ""
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class SupersedeRequest:
    """Replace a certificate by its next version with these (complete) fields."""

    certificate_id: str
    request_id: str
    fields: Mapping[str, object]
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Issued:
    """An issued certificate; `replayed` when a retry found it made already."""

    certificate: StoredCertificate
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Superseded:
    """The new version and the predecessor it replaced."""

    certificate: StoredCertificate
    predecessor: StoredCertificate
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Draft:
    """A validated issue, ready to sign once the transaction gives it an index and key."""

    kind: CertificateType
    request: IssueRequest
    fields: Mapping[str, object] = field(hash=False)
    fingerprint: str


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _check_request_id(request_id: str) -> str:
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidRequest(
            "request_id", "1-128 characters of A-Z a-z 0-9 . _ : - (a retry sends the same one)"
        )
    return request_id


def _check_reason(reason: str, *, required: bool, action: str) -> str:
    reason = reason.strip()
    if required and not reason:
        raise InvalidRequest("reason", f"{action} needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest("reason", f"at most {MAX_REASON_CHARS} characters")
    return reason


def _fingerprint(values: Mapping[str, object]) -> str:
    return hashlib.sha256(canonical_json(values)).hexdigest()


def _time_text(moment: datetime | None) -> str | None:
    return None if moment is None else _second(moment).isoformat()


def require_issuer(caller: Caller, issuer_uscc: str, what: str) -> None:
    """Only the issuing department may act on its certificates.

    Raises:
        PermissionDenied: `caller` is another organization; the message names `what`.
    """
    if caller.anonymous_dev or caller.organization == issuer_uscc:
        return
    raise PermissionDenied(f"{caller} may not {what}: only the issuer {issuer_uscc} may")


class CertificateLifecycle:
    """Issue, supersede, revoke, suspend and reinstate certificates; read them back."""

    def __init__(
        self,
        store: CertificateStore,
        types: CertificateTypes,
        keys: KeyManager,
        audit: AuditTrail,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_status_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_status_change` runs after a committed change of a status bit."""
        self.store = store
        self.types = types
        self.keys = keys
        self.audit = audit
        self._clock = clock
        self._on_status_change = on_status_change

    # -- reading -------------------------------------------------------------------

    def get(self, certificate_id: str) -> StoredCertificate:
        """The stored certificate.

        Raises:
            InvalidRequest: the id is malformed or its check character is wrong.
            NotFound: no such certificate.
            StoreError: the database failed.
        """
        parse_certificate_id(certificate_id)
        return self.store.get(certificate_id)

    def list_by_holder(self, query: HolderQuery) -> list[StoredCertificate]:
        """A page of the holder's certificates, newest first. Raises `StoreError`."""
        return self.store.list_by_holder(query)

    # -- issuing -------------------------------------------------------------------

    def issue(self, request: IssueRequest, caller: Caller) -> Issued:
        """Sign and store a new certificate, or return the one this request id made.

        Raises:
            InvalidRequest: a field of the request breaks its rule (the field is named),
                or the request id was used for a different request.
            PermissionDenied: `caller` is not the type's issuer.
            FailedPrecondition: the issuer has no key that may sign now.
            StoreError: the database failed; nothing was stored.
        """
        return self.issue_many([request], caller)[0]

    def issue_many(self, requests: Sequence[IssueRequest], caller: Caller) -> list[Issued]:
        """`issue` for many requests in one transaction: all are stored or none.

        Raises: as `issue`, for the first request at fault.
        """
        drafts = [self._draft(request, caller) for request in requests]
        results: list[Issued] = []
        with self.store.write() as write:
            write.lock_state()
            now = _second(self._clock())
            earlier: dict[tuple[str, str], StoredCertificate] = {}
            for issuer in {d.kind.issuer_uscc for d in drafts}:
                wanted = [d.request.request_id for d in drafts if d.kind.issuer_uscc == issuer]
                for found in write.find_requests(issuer, wanted):
                    earlier[issuer, found.request_id] = found
            signing: dict[str, list[tuple[StoredKey, SigningKey]]] = {}
            made: list[StoredCertificate] = []
            entries: list[AuditEntry] = []
            for draft in drafts:
                issuer = draft.kind.issuer_uscc
                known = earlier.get((issuer, draft.request.request_id))
                if known is not None:
                    _require_same_request(known, draft.request.request_id, draft.fingerprint)
                    results.append(Issued(known, replayed=True))
                    continue
                if draft.kind.code not in signing:
                    signing[draft.kind.code] = self._signers(write, draft.kind, now)
                stored = self._sign(
                    write,
                    draft.kind,
                    signing[draft.kind.code],
                    holder=draft.request.holder,
                    serial=_new_serial(),
                    version=1,
                    predecessor=None,
                    fields=draft.fields,
                    valid_from=draft.request.valid_from,
                    valid_until=draft.request.valid_until,
                    request_id=draft.request.request_id,
                    fingerprint=draft.fingerprint,
                    now=now,
                )
                earlier[issuer, draft.request.request_id] = stored
                made.append(stored)
                entries.append(self._entry(caller, "CERT_ISSUE", stored, "issued"))
                results.append(Issued(stored))
            write.insert_certificates(made)
            write.append_audit(entries)
        return results

    def _draft(self, request: IssueRequest, caller: Caller) -> _Draft:
        kind = self.types.get(request.type_code)
        if request.issuer_uscc and request.issuer_uscc != kind.issuer_uscc:
            raise InvalidRequest(
                "issuer_uscc", f"{kind.label} is issued by {kind.issuer_uscc}, not by this USCC"
            )
        require_issuer(caller, kind.issuer_uscc, f"issue {kind.label}")
        _check_request_id(request.request_id)
        if request.holder.kind != kind.holder_kind:
            raise InvalidRequest(
                "holder.kind", f"{kind.label} is held by a {kind.holder_kind.value} subject"
            )
        fields = kind.check_fields(request.fields)
        _check_window(request.valid_from, request.valid_until)
        fingerprint = _fingerprint(
            {
                "action": "issue",
                "type_code": kind.code,
                "holder": f"{request.holder.kind.value}:{request.holder.value}",
                "fields": fields,
                "valid_from": _time_text(request.valid_from),
                "valid_until": _time_text(request.valid_until),
            }
        )
        return _Draft(kind, request, fields, fingerprint)

    def supersede(self, request: SupersedeRequest, caller: Caller) -> Superseded:
        """Issue version n+1 of a certificate, linked to it, and mark it superseded.

        Unset validity: `valid_from` now, `valid_until` the predecessor's (when still
        later than `valid_from`), else the type's default.

        Raises:
            InvalidRequest: a field is malformed (named), or the request id was used
                for a different request.
            NotFound: no such certificate.
            PermissionDenied: `caller` is not the certificate's issuer.
            FailedPrecondition: the certificate is revoked or superseded already, its
                type is no longer declared, or it is at version 999.
            StoreError: the database failed; nothing was stored.
        """
        parsed = parse_certificate_id(request.certificate_id)
        require_issuer(caller, parsed.issuer_uscc, f"supersede {request.certificate_id}")
        _check_request_id(request.request_id)
        kind = self.types.find(parsed.type_code)
        if kind is None or kind.issuer_uscc != parsed.issuer_uscc:
            raise FailedPrecondition(
                f"certificate type {parsed.type_code} of issuer {parsed.issuer_uscc} is not "
                "declared on this hub any more; it can be revoked but not superseded"
            )
        fields = kind.check_fields(request.fields)
        _check_window(request.valid_from, request.valid_until)
        reason = _check_reason(request.reason, required=False, action="supersede")
        fingerprint = _fingerprint(
            {
                "action": "supersede",
                "certificate_id": request.certificate_id,
                "fields": fields,
                "valid_from": _time_text(request.valid_from),
                "valid_until": _time_text(request.valid_until),
                "reason": reason,
            }
        )
        with self.store.write() as write:
            write.lock_state()
            earlier = _replayed(write, parsed.issuer_uscc, request.request_id, fingerprint)
            if earlier is not None:
                assert earlier.certificate.predecessor is not None
                old = write.get_for_update(earlier.certificate.predecessor)
                return Superseded(earlier, old, replayed=True)
            old = write.get_for_update(request.certificate_id)
            _require_in_force(old, "supersede")
            if old.certificate.version >= MAX_VERSION:
                raise FailedPrecondition(f"{old.id} is at version {MAX_VERSION}, the last one")
            now = _second(self._clock())
            # A replacement keeps the term of the certificate it replaces.
            valid_until = request.valid_until
            old_until = old.certificate.valid_until
            if (
                valid_until is None
                and old_until is not None
                and old_until > _second(request.valid_from or now)
            ):
                valid_until = old_until
            holder = parse_key(old.certificate.holder_kind, old.certificate.holder_value)
            new = self._sign(
                write,
                kind,
                self._signers(write, kind, now),
                holder=holder,
                serial=old.certificate.serial,
                version=old.certificate.version + 1,
                predecessor=old.id,
                fields=fields,
                valid_from=request.valid_from,
                valid_until=valid_until,
                request_id=request.request_id,
                fingerprint=fingerprint,
                now=now,
            )
            write.insert_certificates([new])
            why = reason or f"superseded by version {new.certificate.version}"
            write.set_status(
                old.id, CertificateStatus.SUPERSEDED, reason=why, at=now, successor_id=new.id
            )
            write.bump_status_revision()
            write.append_audit(
                [self._entry(caller, "CERT_SUPERSEDE", new, why, predecessor=old.id)]
            )
            predecessor = _with_status(old, CertificateStatus.SUPERSEDED, why, now, new.id)
        self._on_status_change()
        return Superseded(new, predecessor)

    def _signers(
        self, write: CertificateWrite, kind: CertificateType, now: datetime
    ) -> list[tuple[StoredKey, SigningKey]]:
        """The issuer keys a certificate of `kind` is signed with now, primary first:
        one per declared algorithm, or the issuer's one key when the type names none."""
        if not kind.algorithms:
            return [self.keys.signing_key_in(write, kind.issuer_uscc, now)]
        return [
            self.keys.signing_key_in(write, kind.issuer_uscc, now, alg) for alg in kind.algorithms
        ]

    def _sign(
        self,
        write: CertificateWrite,
        kind: CertificateType,
        keys: Sequence[tuple[StoredKey, SigningKey]],
        *,
        holder: SubjectKey,
        serial: str,
        version: int,
        predecessor: str | None,
        fields: Mapping[str, object],
        valid_from: datetime | None,
        valid_until: datetime | None,
        request_id: str,
        fingerprint: str,
        now: datetime,
    ) -> StoredCertificate:
        stored_key, signing_key = keys[0]
        start = now if valid_from is None else _second(valid_from)
        if valid_until is None and kind.validity is not None:
            valid_until = start + kind.validity
        state = write.lock_state()
        certificate = Certificate(
            id=certificate_id(kind.code, kind.issuer_uscc, serial, version),
            type_code=kind.code,
            type_name=kind.name,
            holder_kind=holder.kind.value,
            holder_value=holder.value,
            issuer_department=stored_key.issuer_department or kind.issuer_department,
            issuer_uscc=kind.issuer_uscc,
            issued_at=now,
            valid_from=start,
            valid_until=valid_until,
            version=version,
            predecessor=predecessor,
            fields=dict(fields),  # type: ignore[arg-type]  # checked JSON values
            status_list_index=write.take_status_index(MAX_ENTRIES),
            status_list_uri=state.status_list_uri,
        )
        # A dual-signed type: the same canonical payload, signed by the second key too.
        second = keys[1] if len(keys) > 1 else None
        return StoredCertificate(
            certificate=certificate,
            token=certificate.sign(signing_key),
            kid=stored_key.kid,
            second_token=None if second is None else certificate.sign(second[1]),
            second_kid=None if second is None else second[0].kid,
            status=CertificateStatus.VALID,
            status_reason="issued",
            status_changed_at=now,
            successor_id=None,
            request_id=request_id,
            request_fingerprint=fingerprint,
        )

    # -- status changes ------------------------------------------------------------

    def revoke(self, certificate_id: str, reason: str, caller: Caller) -> StoredCertificate:
        """Revoke for good, with a reason.

        Raises:
            InvalidRequest: the id is malformed, or the reason is missing.
            NotFound: no such certificate.
            PermissionDenied: `caller` is not its issuer.
            FailedPrecondition: it is revoked or superseded already.
            StoreError: the database failed; nothing changed.
        """
        why = _check_reason(reason, required=True, action="a revocation")
        return self._change(
            certificate_id,
            caller,
            action="CERT_REVOKE",
            verb="revoke",
            allowed=(CertificateStatus.VALID, CertificateStatus.SUSPENDED),
            to=CertificateStatus.REVOKED,
            reason=why,
        )

    def suspend(self, certificate_id: str, reason: str, caller: Caller) -> StoredCertificate:
        """Suspend (reversibly), with a reason.

        Raises:
            InvalidRequest: the id is malformed, or the reason is missing.
            NotFound: no such certificate.
            PermissionDenied: `caller` is not its issuer.
            FailedPrecondition: it is not valid (suspended, revoked or superseded).
            StoreError: the database failed; nothing changed.
        """
        why = _check_reason(reason, required=True, action="a suspension")
        return self._change(
            certificate_id,
            caller,
            action="CERT_SUSPEND",
            verb="suspend",
            allowed=(CertificateStatus.VALID,),
            to=CertificateStatus.SUSPENDED,
            reason=why,
        )

    def reinstate(self, certificate_id: str, reason: str, caller: Caller) -> StoredCertificate:
        """Lift a suspension.

        Raises:
            InvalidRequest: the id is malformed.
            NotFound: no such certificate.
            PermissionDenied: `caller` is not its issuer.
            FailedPrecondition: it is not suspended.
            StoreError: the database failed; nothing changed.
        """
        why = _check_reason(reason, required=False, action="reinstatement") or "reinstated"
        return self._change(
            certificate_id,
            caller,
            action="CERT_REINSTATE",
            verb="reinstate",
            allowed=(CertificateStatus.SUSPENDED,),
            to=CertificateStatus.VALID,
            reason=why,
        )

    def _change(
        self,
        certificate_id: str,
        caller: Caller,
        *,
        action: str,
        verb: str,
        allowed: tuple[CertificateStatus, ...],
        to: CertificateStatus,
        reason: str,
    ) -> StoredCertificate:
        parsed = parse_certificate_id(certificate_id)
        require_issuer(caller, parsed.issuer_uscc, f"{verb} {certificate_id}")
        with self.store.write() as write:
            write.lock_state()
            current = write.get_for_update(certificate_id)
            if current.status not in allowed:
                raise FailedPrecondition(_refusal(current, verb))
            now = _second(self._clock())
            write.set_status(certificate_id, to, reason=reason, at=now)
            write.bump_status_revision()
            changed = _with_status(current, to, reason, now, current.successor_id)
            write.append_audit([self._entry(caller, action, changed, reason)])
        self._on_status_change()
        return changed

    def _entry(
        self,
        caller: Caller,
        action: str,
        stored: StoredCertificate,
        reason: str,
        **detail: object,
    ) -> AuditEntry:
        certificate = stored.certificate
        return self.audit.entry(
            caller,
            action,
            "OK",
            subject=parse_key(certificate.holder_kind, certificate.holder_value),
            certificate_id=certificate.id,
            record_types=[f"certificate.{certificate.type_code}"],
            purpose={"case_id": stored.request_id, "reason": reason},
            kid=stored.kid,
            **detail,
        )


def _replayed(
    write: CertificateWrite, issuer_uscc: str, request_id: str, fingerprint: str
) -> StoredCertificate | None:
    earlier = write.find_requests(issuer_uscc, [request_id])
    if not earlier:
        return None
    _require_same_request(earlier[0], request_id, fingerprint)
    return earlier[0]


def _require_same_request(earlier: StoredCertificate, request_id: str, fingerprint: str) -> None:
    if earlier.request_fingerprint != fingerprint:
        raise InvalidRequest(
            "request_id", f"{request_id!r} was used for a different request ({earlier.id})"
        )


def _check_window(valid_from: datetime | None, valid_until: datetime | None) -> None:
    if (
        valid_from is not None
        and valid_until is not None
        and _second(valid_until) <= _second(valid_from)
    ):
        raise InvalidRequest("valid_until", "must be later than valid_from")


def _require_in_force(stored: StoredCertificate, verb: str) -> None:
    if not stored.status.in_force:
        raise FailedPrecondition(_refusal(stored, verb))


def _refusal(stored: StoredCertificate, verb: str) -> str:
    since = stored.status_changed_at.strftime("%Y-%m-%d %H:%M:%SZ")
    if stored.status is CertificateStatus.SUPERSEDED:
        return f"cannot {verb} {stored.id}: it was superseded by {stored.successor_id} on {since}"
    if stored.status is CertificateStatus.REVOKED:
        return f"cannot {verb} {stored.id}: it was revoked on {since} ({stored.status_reason})"
    if stored.status is CertificateStatus.SUSPENDED:
        return f"cannot {verb} {stored.id}: it is suspended since {since}"
    return f"cannot {verb} {stored.id}: it is valid, not suspended"


def _with_status(
    stored: StoredCertificate,
    status: CertificateStatus,
    reason: str,
    at: datetime,
    successor_id: str | None,
) -> StoredCertificate:
    return StoredCertificate(
        certificate=stored.certificate,
        token=stored.token,
        kid=stored.kid,
        status=status,
        status_reason=reason,
        status_changed_at=at,
        successor_id=successor_id,
        request_id=stored.request_id,
        request_fingerprint=stored.request_fingerprint,
    )


def _new_serial() -> str:
    # 88 random bits reduced to 16 base-36 digits (36**16 is about 2**82.7).
    number = int.from_bytes(secrets.token_bytes(11), "big") % 36**SERIAL_LENGTH
    digits = []
    for _ in range(SERIAL_LENGTH):
        number, digit = divmod(number, 36)
        digits.append(_SERIAL_ALPHABET[digit])
    return "".join(digits)
