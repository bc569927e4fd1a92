"""Certificates for callers: issue and manage (audited by the lifecycle), read (audited here).

Writes are `exchange.certificates.lifecycle.CertificateLifecycle`'s, each one database
transaction with its audit entry; reads of a holder's certificates go into the audit
trail like any other access to personal data. Both transports call these methods.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from certstore.certificates import HolderQuery, StoredCertificate
from domain.errors import InvalidRequest
from domain.subjects import SubjectKey, parse_key
from exchange.app import pages
from exchange.auth.policy import Caller
from exchange.certificates.lifecycle import (
    CertificateLifecycle,
    Issued,
    IssueRequest,
    Superseded,
    SupersedeRequest,
)
from exchange.hub import Hub
from exchange.metrics import CERTIFICATES_ISSUED

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
_LISTING: Final = "certificates"


def encode_page_token(last: StoredCertificate) -> str:
    """An opaque token that continues a holder's listing after `last`."""
    return pages.encode_page_token(
        _LISTING, {"t": last.certificate.issued_at.isoformat(), "id": last.id}
    )


def decode_page_token(token: str) -> tuple[datetime, str] | None:
    """The position a page token stands for (None for the first page).

    Raises:
        InvalidRequest: (``page_token``, rule) for a token this hub did not make.
    """
    position = pages.decode_page_token(token, _LISTING)
    if position is None:
        return None
    try:
        moment = datetime.fromisoformat(position["t"])
        certificate_id = position["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(pages.FIELD, "is not a token this hub gave out") from exc
    if moment.tzinfo is None or not isinstance(certificate_id, str):
        raise InvalidRequest(pages.FIELD, "is not a token this hub gave out")
    return moment, certificate_id


@dataclass(frozen=True, slots=True)
class CertificatePage:
    certificates: tuple[StoredCertificate, ...]
    next_page_token: str


class CertificateService:
    """Issue, read and manage e-certificates; only issuers may change theirs."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def _lifecycle(self) -> CertificateLifecycle:
        return self.hub.certificates.lifecycle

    async def issue(self, caller: Caller, request: IssueRequest) -> Issued:
        """Raises `InvalidRequest`, `PermissionDenied` (audited), `StoreError`."""
        issued = await asyncio.to_thread(self._lifecycle.issue, request, caller)
        if not issued.replayed:
            CERTIFICATES_ISSUED.labels(type_code=request.type_code).inc()
        return issued

    async def get(self, caller: Caller, certificate_id: str) -> StoredCertificate:
        """The certificate, its status and token; the read is audited under its holder.

        Raises `InvalidRequest` (a malformed id), `NotFound`, `StoreError`.
        """
        stored: StoredCertificate = await asyncio.to_thread(self._lifecycle.get, certificate_id)
        certificate = stored.certificate
        await self._audit_read(
            caller,
            "CERT_READ",
            parse_key(certificate.holder_kind, certificate.holder_value),
            certificate_id=stored.id,
            record_types=[f"certificate.{certificate.type_code}"],
        )
        return stored

    async def list_by_holder(
        self,
        caller: Caller,
        holder: SubjectKey,
        *,
        type_code: str = "",
        include_inactive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> CertificatePage:
        """A holder's certificates, newest first, one page; the read is audited.

        Raises `InvalidRequest` (page size, page token), `StoreError`.
        """
        if page_size < 0:
            raise InvalidRequest("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        query = HolderQuery(
            holder_kind=holder.kind.value,
            holder_value=holder.value,
            limit=size + 1,
            type_code=type_code or None,
            include_inactive=include_inactive,
            after=decode_page_token(page_token),
        )
        found: list[StoredCertificate] = await asyncio.to_thread(
            self._lifecycle.list_by_holder, query
        )
        page = found[:size]
        await self._audit_read(
            caller,
            "CERT_LIST",
            holder,
            certificates=len(page),
            record_types=sorted({f"certificate.{s.certificate.type_code}" for s in page}),
        )
        return CertificatePage(
            tuple(page), encode_page_token(page[-1]) if len(found) > size else ""
        )

    async def supersede(self, caller: Caller, request: SupersedeRequest) -> Superseded:
        """Raises `InvalidRequest`, `NotFound`, `PermissionDenied`, `FailedPrecondition`."""
        done: Superseded = await asyncio.to_thread(self._lifecycle.supersede, request, caller)
        CERTIFICATES_ISSUED.labels(type_code=done.certificate.certificate.type_code).inc()
        return done

    async def revoke(self, caller: Caller, certificate_id: str, reason: str) -> StoredCertificate:
        """Raises `InvalidRequest`, `NotFound`, `PermissionDenied`, `FailedPrecondition`."""
        stored: StoredCertificate = await asyncio.to_thread(
            self._lifecycle.revoke, certificate_id, reason, caller
        )
        return stored

    async def suspend(self, caller: Caller, certificate_id: str, reason: str) -> StoredCertificate:
        """Raises `InvalidRequest`, `NotFound`, `PermissionDenied`, `FailedPrecondition`."""
        stored: StoredCertificate = await asyncio.to_thread(
            self._lifecycle.suspend, certificate_id, reason, caller
        )
        return stored

    async def reinstate(
        self, caller: Caller, certificate_id: str, reason: str
    ) -> StoredCertificate:
        """Raises `InvalidRequest`, `NotFound`, `PermissionDenied`, `FailedPrecondition`."""
        stored: StoredCertificate = await asyncio.to_thread(
            self._lifecycle.reinstate, certificate_id, reason, caller
        )
        return stored

    async def _audit_read(
        self, caller: Caller, action: str, holder: SubjectKey, **detail: Any
    ) -> None:
        audit = self.hub.audit
        await audit.record(audit.entry(caller, action, "OK", subject=holder, **detail))
