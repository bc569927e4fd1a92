"""`tongban.v1.AuditService`: who accessed a subject's data and why, with inclusion
proofs; signed tree heads and consistency proofs for anyone checking the log."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import grpc
import structlog

from certstore.audit import StoredTreeHead, leaf_data
from domain.errors import (
    FailedPrecondition,
    InvalidRequest,
    PermissionDenied,
    StoreError,
    TongbanError,
)
from exchange.auth.identity import current_caller
from exchange.generated import audit_pb2, audit_pb2_grpc, common_pb2
from exchange.hub import Hub
from exchange.services import convert

log = structlog.get_logger("tongban.audit")

Context = grpc.aio.ServicerContext[Any, Any]

AUDITOR = "auditor"
MAX_PAGE = 200
DEFAULT_PAGE = 50


def tree_head_to_proto(head: StoredTreeHead, hash_name: str) -> audit_pb2.SignedTreeHead:
    return audit_pb2.SignedTreeHead(
        size=head.size,
        root_hash=bytes.fromhex(head.root),
        time=convert.timestamp(head.signed_at),
        checkpoint=head.note,
        hash=hash_name,
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def _tree_head(self, *, covering: int = 0) -> StoredTreeHead:
        """The newest signed head, signed now when it does not cover `covering` entries
        (or when none exists). Raises `FailedPrecondition` when none can be had."""
        latest = await self._tree_head_or_none(covering)
        if latest is None:
            raise FailedPrecondition(
                "no signed tree head yet (the log is empty, or no node holds the root key)"
            )
        return latest

    async def _tree_head_or_none(self, covering: int) -> StoredTreeHead | None:
        store = self.hub.audit.store
        latest = await asyncio.to_thread(store.latest_tree_head)
        if latest is None or latest.size < covering:
            try:
                signed = await asyncio.to_thread(self.hub.sign_tree_head)
            except StoreError:
                raise
            except TongbanError as exc:  # the root key does not open here: serve the last one
                log.warning("audit tree head not signed on demand", error=exc.message)
                signed = None
            latest = signed or await asyncio.to_thread(store.latest_tree_head)
        return latest

    async def ListAccess(
        self, request: audit_pb2.ListAccessRequest, context: Context
    ) -> audit_pb2.ListAccessResponse:
        """Accesses to one subject's data, oldest first, in pages, each with its leaf and
        inclusion proof against the response's signed tree head.

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
        after = convert.sequence_token(request.page_token)
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
        page = entries[:limit]
        answer = audit_pb2.ListAccessResponse()
        head = None
        if page:
            head = await self._tree_head_or_none(page[-1].sequence)
        if head is not None:
            state = await asyncio.to_thread(trail.store.state)
            answer.tree_head.CopyFrom(tree_head_to_proto(head, state.hash_name))
        for stored in page:
            entry, detail = stored.entry, stored.entry.detail
            purpose = detail.get("purpose") or {}
            proof: list[bytes] = []
            if head is not None and stored.leaf_index < head.size:
                proof = await asyncio.to_thread(
                    trail.store.inclusion_proof, stored.leaf_index, head.size
                )
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
                    leaf_index=stored.leaf_index,
                    leaf_data=leaf_data(stored.sequence, entry),
                    inclusion_proof=proof,
                )
            )
        if len(entries) > limit:
            answer.next_page_token = str(entries[limit - 1].sequence)
        return answer

    async def VerifyChain(
        self, request: audit_pb2.VerifyChainRequest, context: Context
    ) -> audit_pb2.VerifyChainResponse:
        """Recompute the tree from the entries (auditors only)."""
        caller = current_caller()
        if not (caller.anonymous_dev or AUDITOR in caller.roles):
            raise PermissionDenied("only an auditor may verify the audit log")
        heads = {h.size: h.root for h in await asyncio.to_thread(self.hub.audit.store.tree_heads)}
        report = await asyncio.to_thread(self.hub.audit.store.verify, heads)
        return audit_pb2.VerifyChainResponse(
            intact=report.intact,
            entries_checked=report.entries_checked,
            first_bad_sequence=report.first_bad_sequence,
            problem=report.problem,
        )

    async def GetTreeHead(
        self, request: audit_pb2.GetTreeHeadRequest, context: Context
    ) -> audit_pb2.GetTreeHeadResponse:
        store = self.hub.audit.store
        size = (await asyncio.to_thread(store.state)).size if request.fresh else 0
        head = await self._tree_head(covering=size)
        state = await asyncio.to_thread(store.state)
        return audit_pb2.GetTreeHeadResponse(tree_head=tree_head_to_proto(head, state.hash_name))

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.GetConsistencyProofResponse:
        store = self.hub.audit.store
        if request.first_size < 0:
            raise InvalidRequest("first_size", "must not be negative")
        if request.second_size < 0:
            raise InvalidRequest("second_size", "must not be negative")
        if request.second_size:
            heads = {h.size: h for h in await asyncio.to_thread(store.tree_heads)}
            second = heads.get(request.second_size)
            if second is None:
                raise InvalidRequest("second_size", "no signed tree head has this size")
        else:
            second = await self._tree_head(covering=request.first_size)
        if request.first_size > second.size:
            raise InvalidRequest(
                "first_size", f"must not exceed the second tree's size {second.size}"
            )
        proof = await asyncio.to_thread(store.consistency_proof, request.first_size, second.size)
        state = await asyncio.to_thread(store.state)
        return audit_pb2.GetConsistencyProofResponse(
            proof=proof, second=tree_head_to_proto(second, state.hash_name)
        )

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.GetInclusionProofResponse:
        store = self.hub.audit.store
        if request.leaf_index < 0:
            raise InvalidRequest("leaf_index", "must not be negative")
        if request.tree_size < 0:
            raise InvalidRequest("tree_size", "must not be negative")
        if request.tree_size:
            heads = {h.size: h for h in await asyncio.to_thread(store.tree_heads)}
            head = heads.get(request.tree_size)
            if head is None:
                raise InvalidRequest("tree_size", "no signed tree head has this size")
        else:
            head = await self._tree_head(covering=request.leaf_index + 1)
        if request.leaf_index >= head.size:
            raise InvalidRequest("leaf_index", f"must be below the tree size {head.size}")
        proof = await asyncio.to_thread(store.inclusion_proof, request.leaf_index, head.size)
        leaf = await asyncio.to_thread(store.leaf_hash, request.leaf_index)
        state = await asyncio.to_thread(store.state)
        return audit_pb2.GetInclusionProofResponse(
            proof=proof, leaf_hash=leaf, tree_head=tree_head_to_proto(head, state.hash_name)
        )
