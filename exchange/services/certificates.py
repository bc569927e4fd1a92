"""`tongban.v1.CertificateService`: issue and manage e-certificates.

Protobuf is translated here, on the way in and out; the work (and the audit of reads)
is `exchange.app.certificates.CertificateService`'s, for both transports.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from certstore.certificates import CertificateStatus, StoredCertificate
from domain.errors import InvalidRequest
from domain.subjects import SubjectKey
from exchange.app.certificates import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CertificateService,
    decode_page_token,
    encode_page_token,
)
from exchange.auth.identity import current_caller
from exchange.certificates.holder_codes import holder_from_national
from exchange.certificates.lifecycle import IssueRequest, SupersedeRequest
from exchange.certificates.usage import HolderSearch, UsageCopyRequest
from exchange.generated import certificates_pb2, certificates_pb2_grpc, common_pb2
from exchange.hub import Hub
from exchange.services import convert
from exchange.services.context import CallContext
from signing import Certificate
from signing.usage_copy import UsageCopy

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = [
    "CertificateServicer",
    "certificate_to_proto",
    "decode_page_token",
    "encode_page_token",
    "stored_to_proto",
]

_STATUS = {
    CertificateStatus.VALID: certificates_pb2.CERTIFICATE_STATUS_VALID,
    CertificateStatus.SUSPENDED: certificates_pb2.CERTIFICATE_STATUS_SUSPENDED,
    CertificateStatus.REVOKED: certificates_pb2.CERTIFICATE_STATUS_REVOKED,
    CertificateStatus.SUPERSEDED: certificates_pb2.CERTIFICATE_STATUS_SUPERSEDED,
}
_KEY_KINDS = {name.removeprefix("KEY_KIND_"): number for name, number in common_pb2.KeyKind.items()}


def _set_time(stamp: timestamp_pb2.Timestamp, moment: datetime) -> None:
    stamp.seconds = int(moment.timestamp())


def certificate_to_proto(
    certificate: Certificate, *, token: str = "", stored: StoredCertificate | None = None
) -> certificates_pb2.Certificate:
    """A certificate as protobuf; with `stored`, its lifecycle status and token too."""
    message = certificates_pb2.Certificate(
        id=certificate.id,
        type_code=certificate.type_code,
        type_name=certificate.type_name,
        holder=common_pb2.SubjectKey(
            kind=_KEY_KINDS.get(certificate.holder_kind, common_pb2.KEY_KIND_UNSPECIFIED),
            value=certificate.holder_value,
        ),
        issuer=certificates_pb2.Issuer(
            department=certificate.issuer_department, uscc=certificate.issuer_uscc
        ),
        version=certificate.version,
        predecessor_id=certificate.predecessor or "",
        token=token,
        status_list_index=certificate.status_list_index,
    )
    # Whole seconds: every certificate time is kept to the second.
    _set_time(message.issued_at, certificate.issued_at)
    _set_time(message.valid_from, certificate.valid_from)
    if certificate.valid_until is not None:
        _set_time(message.valid_until, certificate.valid_until)
    if certificate.fields:
        message.fields.update(certificate.fields)
    if stored is not None:
        message.token = stored.token
        message.second_token = stored.second_token or ""
        message.status = _STATUS[stored.status]
        message.status_reason = stored.status_reason
        message.successor_id = stored.successor_id or ""
        _set_time(message.status_changed_at, stored.status_changed_at)
    return message


def usage_copy_to_proto(copy: UsageCopy) -> certificates_pb2.UsageCopy:
    """A usage copy as protobuf."""
    message = certificates_pb2.UsageCopy(
        usage_copy_id=copy.usage_copy_id,
        certificate_id=copy.certificate_id,
        certificate_sha256=copy.certificate_sha256,
        type_code=copy.type_code,
        type_name=copy.type_name,
        holder_masked=copy.holder_masked,
        issuer=certificates_pb2.Issuer(department=copy.issuer_department, uscc=copy.issuer_uscc),
        user_organization=copy.user_organization,
        user_system=copy.user_system,
        case_id=copy.case_id,
        use_cause=copy.use_cause,
        stamp_text=copy.stamp_text,
    )
    _set_time(message.issued_at, copy.issued_at)
    _set_time(message.valid_from, copy.valid_from)
    _set_time(message.valid_until, copy.valid_until)
    return message


def stored_to_proto(stored: StoredCertificate) -> certificates_pb2.Certificate:
    """A stored certificate as protobuf, with its status and token."""
    return certificate_to_proto(stored.certificate, stored=stored)


def time_from_proto(message: timestamp_pb2.Timestamp, present: bool, field: str) -> datetime | None:
    """An optional request time, or None when unset.

    Raises:
        InvalidRequest: (`field`, rule) for a time out of range.
    """
    if not present:
        return None
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(field, f"not a valid time: {exc}") from exc


def holder_from_proto(request: Any) -> SubjectKey:
    """The request's `holder`, validated.

    Raises:
        InvalidRequest: (``holder`` / ``holder.kind`` / ``holder.value``, rule).
    """
    if not request.HasField("holder"):
        raise InvalidRequest("holder", "the holder's subject key is required")
    return convert.subject_from_proto(request.holder, "holder")


class CertificateServicer(certificates_pb2_grpc.CertificateServiceServicer):
    """Certificate issuance and lifecycle: translation around `CertificateService`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.certificates = CertificateService(hub)

    async def Issue(
        self, request: certificates_pb2.IssueRequest, context: CallContext
    ) -> certificates_pb2.IssueResponse:
        issue = IssueRequest(
            request_id=request.request_id,
            type_code=request.type_code,
            holder=holder_from_proto(request),
            fields=convert.struct_to_dict(request.fields),
            issuer_uscc=request.issuer_uscc,
            valid_from=time_from_proto(
                request.valid_from, request.HasField("valid_from"), "valid_from"
            ),
            valid_until=time_from_proto(
                request.valid_until, request.HasField("valid_until"), "valid_until"
            ),
        )
        issued = await self.certificates.issue(current_caller(), issue)
        return certificates_pb2.IssueResponse(
            certificate=stored_to_proto(issued.certificate), replayed=issued.replayed
        )

    async def Get(
        self, request: certificates_pb2.GetRequest, context: CallContext
    ) -> certificates_pb2.GetResponse:
        stored = await self.certificates.get(current_caller(), request.certificate_id)
        return certificates_pb2.GetResponse(certificate=stored_to_proto(stored))

    async def ListByHolder(
        self, request: certificates_pb2.ListByHolderRequest, context: CallContext
    ) -> certificates_pb2.ListByHolderResponse:
        page = await self.certificates.list_by_holder(
            current_caller(),
            holder_from_proto(request),
            type_code=request.type_code,
            include_inactive=request.include_inactive,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return certificates_pb2.ListByHolderResponse(
            certificates=[stored_to_proto(s) for s in page.certificates],
            next_page_token=page.next_page_token,
        )

    async def Supersede(
        self, request: certificates_pb2.SupersedeRequest, context: CallContext
    ) -> certificates_pb2.SupersedeResponse:
        supersede = SupersedeRequest(
            certificate_id=request.certificate_id,
            request_id=request.request_id,
            fields=convert.struct_to_dict(request.fields),
            valid_from=time_from_proto(
                request.valid_from, request.HasField("valid_from"), "valid_from"
            ),
            valid_until=time_from_proto(
                request.valid_until, request.HasField("valid_until"), "valid_until"
            ),
            reason=request.reason,
        )
        done = await self.certificates.supersede(current_caller(), supersede)
        return certificates_pb2.SupersedeResponse(
            certificate=stored_to_proto(done.certificate),
            predecessor=stored_to_proto(done.predecessor),
        )

    async def Revoke(
        self, request: certificates_pb2.RevokeRequest, context: CallContext
    ) -> certificates_pb2.RevokeResponse:
        stored = await self.certificates.revoke(
            current_caller(), request.certificate_id, request.reason
        )
        return certificates_pb2.RevokeResponse(certificate=stored_to_proto(stored))

    async def Suspend(
        self, request: certificates_pb2.SuspendRequest, context: CallContext
    ) -> certificates_pb2.SuspendResponse:
        stored = await self.certificates.suspend(
            current_caller(), request.certificate_id, request.reason
        )
        return certificates_pb2.SuspendResponse(certificate=stored_to_proto(stored))

    async def Reinstate(
        self, request: certificates_pb2.ReinstateRequest, context: CallContext
    ) -> certificates_pb2.ReinstateResponse:
        stored = await self.certificates.reinstate(
            current_caller(), request.certificate_id, request.reason
        )
        return certificates_pb2.ReinstateResponse(certificate=stored_to_proto(stored))

    async def RenderDocument(
        self, request: certificates_pb2.RenderDocumentRequest, context: Context
    ) -> certificates_pb2.RenderDocumentResponse:
        caller = current_caller()
        use = self.hub.certificates.use
        pdf, stored = await asyncio.to_thread(
            use.render_certificate, request.certificate_id, caller, self.hub.policy.grant(caller)
        )
        return certificates_pb2.RenderDocumentResponse(pdf=pdf, file_name=f"{stored.id}.pdf")

    async def IssueUsageCopy(
        self, request: certificates_pb2.IssueUsageCopyRequest, context: Context
    ) -> certificates_pb2.IssueUsageCopyResponse:
        caller = current_caller()
        use = self.hub.certificates.use
        asked = UsageCopyRequest(
            certificate_id=request.certificate_id,
            case_id=request.case_id,
            use_cause=request.use_cause,
            validity_days=request.validity_days,
        )
        issued = await asyncio.to_thread(
            use.issue_usage_copy, asked, caller, self.hub.policy.grant(caller)
        )
        answer = certificates_pb2.IssueUsageCopyResponse(
            usage_copy=usage_copy_to_proto(issued.usage_copy),
            token=issued.token,
            certificate_token=issued.certificate.token,
        )
        if request.include_pdf:
            answer.pdf = await asyncio.to_thread(use.render_usage_copy, issued)
            answer.file_name = f"{issued.usage_copy.usage_copy_id}.pdf"
        return answer

    async def QueryByHolder(
        self, request: certificates_pb2.QueryByHolderRequest, context: Context
    ) -> certificates_pb2.QueryByHolderResponse:
        holder = holder_from_national(request.holder_code, request.holder_type_code)
        if request.page_size < 0:
            raise InvalidRequest("page_size", "must not be negative")
        caller = current_caller()
        search = HolderSearch(
            holder=holder,
            use_cause=request.use_cause,
            case_id=request.case_id,
            type_code=request.certificate_type_code or None,
            limit=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            after=decode_page_token(request.page_token),
        )
        use = self.hub.certificates.use
        page = await asyncio.to_thread(use.by_holder, search, caller, self.hub.policy.grant(caller))
        found = []
        for stored in page.certificates:
            # Neither token nor data fields: the hall obtains them as a usage copy.
            message = stored_to_proto(stored)
            message.ClearField("token")
            message.ClearField("fields")
            found.append(message)
        last = page.last_scanned
        return certificates_pb2.QueryByHolderResponse(
            certificates=found,
            next_page_token=encode_page_token(last) if last is not None else "",
        )
