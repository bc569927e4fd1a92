"""`tongban.v1.AuditService`: who accessed a subject's data and why; is the trail intact."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import grpc

from domain.errors import InvalidRequest, PermissionDenied
from exchange.auth.identity import current_caller
from exchange.generated import audit_pb2, audit_pb2_grpc, common_pb2
from exchange.hub import Hub
from exchange.services import convert

Context = grpc.aio.ServicerContext[Any, Any]

AUDITOR = "auditor"
MAX_PAGE = 200
DEFAULT_PAGE = 50


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def ListAccess(
        self, request: audit_pb2.ListAccessRequest, context: Context
    ) -> audit_pb2.ListAccessResponse:
        """Accesses to one subject's data, oldest first, in pages.

        Only an auditor, or the subject's own channel (a caller whose credential is
        bound to that subject), may ask.
        """
        if not request.HasField("subject"):
            raise InvalidRequest("subject", "a subject key is required")
        subject = convert.subject_from_proto(request.subject)
        caller = current_caller()
        if not (caller.anonymous_dev or AUDITOR in caller.roles or caller.subject == subject):
            raise PermissionDenied(
                "only an auditor or the subject's own channel may list accesses to its data"
            )
        if not 0 <= request.page_size <= MAX_PAGE:
            raise InvalidRequest("page_size", f"must be between 0 and {MAX_PAGE}")
        try:
            after = int(request.page_token or 0)
        except ValueError as exc:
            raise InvalidRequest("page_token", "not a token this service issued") from exc
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        limit = request.page_size or DEFAULT_PAGE
        trail = self.hub.audit
        entries = await asyncio.to_thread(
            trail.store.for_subject,
            trail.subject_digest(subject),
            since=since,
            after=after,
            limit=limit + 1,
        )
        answer = audit_pb2.ListAccessResponse()
        for stored in entries[:limit]:
            entry, detail = stored.entry, stored.entry.detail
            purpose = detail.get("purpose") or {}
            answer.entries.append(
                audit_pb2.AccessEntry(
                    sequence=stored.sequence,
                    at=convert.timestamp(entry.at),
                    caller=entry.caller,
                    record_types=list(detail.get("record_types") or []),
                    fields_returned=sorted(
                        f"{record_type}.{name}"
                        for record_type, names in (detail.get("fields_returned") or {}).items()
                        for name in names
                    ),
                    purpose=common_pb2.Purpose(
                        case_id=str(purpose.get("case_id", "")),
                        reason=str(purpose.get("reason", "")),
                    ),
                    sources=sorted(detail.get("sources") or {}),
                    outcome=f"{entry.action} {entry.outcome}",
                )
            )
        if len(entries) > limit:
            answer.next_page_token = str(entries[limit - 1].sequence)
        return answer

    async def VerifyChain(
        self, request: audit_pb2.VerifyChainRequest, context: Context
    ) -> audit_pb2.VerifyChainResponse:
        """Walk the chain (auditors only)."""
        caller = current_caller()
        if not (caller.anonymous_dev or AUDITOR in caller.roles):
            raise PermissionDenied("only an auditor may verify the audit chain")
        report = await asyncio.to_thread(self.hub.audit.store.verify)
        return audit_pb2.VerifyChainResponse(
            intact=report.intact,
            entries_checked=report.entries_checked,
            first_bad_sequence=report.first_bad_sequence,
            problem=report.problem,
        )
