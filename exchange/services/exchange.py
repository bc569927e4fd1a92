"""`tongban.v1.ExchangeService`: one question about one subject, every source's answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import grpc
import structlog

from domain.errors import InvalidRequest, PermissionDenied, TongbanError
from domain.records import Purpose, StoredRecord
from domain.subjects import SubjectKey
from exchange.audit import lookup_detail
from exchange.auth.identity import current_caller
from exchange.auth.policy import Caller, Grant
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.hub import Hub
from exchange.receipts import ConsultedSource, ReturnedRecord, answer_view
from exchange.routing import SourceOutcome, SourceResult
from exchange.services import convert
from exchange.status import status_code_for

log = structlog.get_logger("tongban.exchange")

MAX_RECORD_TYPES = 64

# SOURCE_OUTCOME_OK → "OK", as the audit trail records outcomes.
_OUTCOME_NAMES = {
    number: name.removeprefix("SOURCE_OUTCOME_")
    for name, number in common_pb2.SourceOutcome.items()
}

Context = grpc.aio.ServicerContext[Any, Any]


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Lookup(
        self, request: exchange_pb2.LookupRequest, context: Context
    ) -> exchange_pb2.LookupResponse:
        if not request.HasField("subject"):
            raise InvalidRequest("subject", "a subject key is required")
        subject = convert.subject_from_proto(request.subject)
        purpose = convert.purpose_from_proto(request.purpose, request.HasField("purpose"))
        record_types = self._record_types(request.record_types)
        staleness = convert.duration_seconds(
            request.max_staleness,
            "max_staleness",
            at_most=self.hub.settings.exchange.max_staleness_seconds,
        )
        return await self._lookup(
            subject, record_types, purpose, self._deadline(context), staleness
        )

    async def BatchLookup(
        self, request: exchange_pb2.BatchLookupRequest, context: Context
    ) -> AsyncIterator[exchange_pb2.BatchLookupResponse]:
        limit = self.hub.settings.exchange.max_batch_subjects
        if not request.subjects:
            raise InvalidRequest("subjects", "at least one subject is required")
        if len(request.subjects) > limit:
            raise InvalidRequest("subjects", f"at most {limit} subjects per call")
        if request.max_concurrency < 0:
            raise InvalidRequest("max_concurrency", "must not be negative")
        purpose = convert.purpose_from_proto(request.purpose, request.HasField("purpose"))
        record_types = self._record_types(request.record_types)
        staleness = convert.duration_seconds(
            request.max_staleness,
            "max_staleness",
            at_most=self.hub.settings.exchange.max_staleness_seconds,
        )
        deadline = self._deadline(context)
        slots = asyncio.Semaphore(
            request.max_concurrency or self.hub.settings.exchange.batch_concurrency
        )

        async def one(index: int) -> exchange_pb2.BatchLookupResponse:
            sent = request.subjects[index]
            answer = exchange_pb2.BatchLookupResponse(index=index, subject=sent)
            try:
                subject = convert.subject_from_proto(sent, field=f"subjects[{index}]")
                async with slots:
                    answer.result.CopyFrom(
                        await self._lookup(subject, record_types, purpose, deadline, staleness)
                    )
            except TongbanError as exc:
                answer.error.code = status_code_for(exc).name
                answer.error.message = exc.message
                answer.error.field = getattr(exc, "field", "")
            return answer

        for finished in asyncio.as_completed([one(i) for i in range(len(request.subjects))]):
            yield await finished

    def _record_types(self, requested: Sequence[str]) -> tuple[str, ...]:
        declared = self.hub.settings.record_types
        if len(requested) > MAX_RECORD_TYPES:
            raise InvalidRequest("record_types", f"at most {MAX_RECORD_TYPES} record types")
        for position, name in enumerate(requested):
            if name not in declared:
                raise InvalidRequest(
                    f"record_types[{position}]", f"unknown record type {name[:80]!r}"
                )
        return tuple(dict.fromkeys(requested))

    def _deadline(self, context: Context) -> float:
        remaining = context.time_remaining()
        default = self.hub.settings.exchange.default_deadline_seconds
        if remaining is None:
            return default
        # Keep part of the caller's deadline for auditing and answering: a fifth of it,
        # at least 50 ms and at most 0.5 s. On a busy machine that work takes longer than
        # on an idle one, and an answer past the deadline is no answer at all.
        return max(0.0, remaining - min(0.5, max(0.05, remaining * 0.2)))

    async def _lookup(
        self,
        subject: SubjectKey,
        requested: tuple[str, ...],
        purpose: Purpose,
        deadline: float,
        staleness: float,
    ) -> exchange_pb2.LookupResponse:
        """Look up `subject` for the current caller, within its grant; audit the access.

        Raises `PermissionDenied` (audited) for a reason or record type the caller's
        policy does not allow, and `StoreError` when the audit entry cannot be written
        (then nothing is answered).
        """
        caller = current_caller()
        # The sharing catalogue's seam: the static policy after catalogue and store grants.
        grant = await self.hub.access.effective_grant(caller, self.hub.policy.grant(caller))
        request_id = str(structlog.contextvars.get_contextvars().get("request_id", ""))
        await self._refuse_unless_allowed(caller, grant, subject, requested, purpose, request_id)
        wanted = requested or tuple(self.hub.settings.record_types)
        types = grant.readable_types(wanted)
        router = self.hub.router
        results = await router.lookup(subject, types, purpose, deadline=deadline) if types else []
        answers = await self._answers(subject, results, staleness)
        response = exchange_pb2.LookupResponse(
            subject=convert.subject_to_proto(subject), request_id=request_id
        )
        fields_returned: dict[str, set[str]] = {}
        returned: list[ReturnedRecord] = []
        for result, (records, stale) in zip(results, answers, strict=True):
            status = convert.source_status_to_proto(result, len(records))
            if stale:
                status.outcome = common_pb2.SOURCE_OUTCOME_STALE_SERVED
                status.detail = f"served from the store: {result.detail}"
            for record in records:
                fields = grant.minimize(record.record_type, record.fields)
                fields_returned.setdefault(record.record_type, set()).update(fields)
                response.records.append(convert.record_to_proto(record, stale=stale, fields=fields))
                returned.append(ReturnedRecord(record, fields, stale))
            response.sources.append(status)
            response.rejected.extend(
                common_pb2.RejectedRecord(
                    adapter_id=result.adapter_id,
                    source_record_id=r.source_record_id,
                    reason=r.reason,
                )
                for r in result.rejected
            )
        denied_types = set(wanted) - set(types)
        consulted = {r.adapter_id for r in results}
        for route in router.routes(subject, denied_types) if denied_types else ():
            withheld = [grant.withheld[t] for t in route.record_types if t in grant.withheld]
            detail = (
                "; ".join(withheld)
                if withheld
                else "your access policy does not include this source's record types"
            )
            if route.adapter.adapter_id not in consulted:
                consulted.add(route.adapter.adapter_id)
                response.sources.append(
                    common_pb2.SourceStatus(
                        adapter_id=route.adapter.adapter_id,
                        outcome=common_pb2.SOURCE_OUTCOME_DENIED,
                        detail=detail,
                    )
                )
            elif withheld:
                # A source also answering other types: say what it was not asked for.
                status = next(
                    s for s in response.sources if s.adapter_id == route.adapter.adapter_id
                )
                status.detail = "; ".join(filter(None, (status.detail, *withheld)))
        response.partial = any(
            r.outcome not in (SourceOutcome.OK, SourceOutcome.NOT_FOUND) for r in results
        )
        outcome = "PARTIAL" if response.partial else "OK"
        audited = await self.hub.audit.record(
            self.hub.audit.entry(
                caller,
                "LOOKUP",
                outcome,
                subject,
                **lookup_detail(
                    types,
                    {k: sorted(v) for k, v in fields_returned.items()},
                    purpose.case_id,
                    purpose.reason,
                    {
                        status.adapter_id: _OUTCOME_NAMES[status.outcome]
                        for status in response.sources
                    },
                    request_id,
                ),
                **_withheld_detail(grant, wanted),
            )
        )
        if self.hub.receipts is not None:
            latencies = {r.adapter_id: r.latency for r in results}
            consulted_sources = [
                ConsultedSource(
                    status.adapter_id,
                    _OUTCOME_NAMES[status.outcome],
                    latencies.get(status.adapter_id, 0.0),
                    status.record_count,
                )
                for status in response.sources
            ]
            view = answer_view(request_id, subject, returned, consulted_sources, response.partial)
            response.receipt = await asyncio.to_thread(
                self.hub.receipts.issue,
                view,
                caller=str(caller),
                subject=subject,
                purpose=purpose,
                issued_at=audited.entry.at,
                audited=audited,
            )
        log.info(
            "lookup answered",
            subject=subject.masked(),
            sources={r.adapter_id: r.outcome.value for r in results},
            records=len(response.records),
            partial=response.partial,
            case_id=purpose.case_id,
        )
        return response

    async def _refuse_unless_allowed(
        self,
        caller: Caller,
        grant: Grant,
        subject: SubjectKey,
        requested: tuple[str, ...],
        purpose: Purpose,
        request_id: str,
    ) -> None:
        problem = None
        if not grant.allows_reason(purpose.reason):
            problem = "this reason is not among the purposes your access policy allows"
        readable = set(grant.readable_types(requested))
        # Types the catalogue withholds are answered per source (DENIED, saying how to
        # apply), not refused for the whole call.
        forbidden = [t for t in requested if t not in readable and t not in grant.withheld]
        if forbidden:
            problem = f"your access policy does not allow reading {', '.join(forbidden)}"
        if problem is None:
            return
        await self.hub.audit.record(
            self.hub.audit.entry(
                caller,
                "LOOKUP",
                "DENIED",
                subject,
                record_types=list(requested),
                purpose={"case_id": purpose.case_id, "reason": purpose.reason},
                why=problem,
                request_id=request_id,
            )
        )
        denial = PermissionDenied(problem)
        denial.audited = True
        raise denial

    async def _answers(
        self, subject: SubjectKey, results: Sequence[SourceResult], staleness: float
    ) -> list[tuple[list[StoredRecord], bool]]:
        """Records per result with whether they are stale: what a source answered (queued
        for the store), or for a failed source the stored copy, when the caller allows
        staleness and it was fetched within `staleness` seconds."""
        now = convert.utcnow()
        answers: list[tuple[list[StoredRecord], bool]] = []
        for result in results:
            if result.records:
                fetched = [
                    StoredRecord.of(
                        r,
                        adapter_id=result.adapter_id,
                        department=result.department,
                        fetched_at=now,
                    )
                    for r in result.records
                ]
                await self.hub.writer.submit(
                    result.adapter_id, result.department, result.records, fetched, now
                )
                answers.append((fetched, False))
            elif result.failed and staleness > 0:
                recalled = await asyncio.to_thread(
                    self.hub.records.find,
                    subject,
                    result.record_types,
                    adapter_ids=[result.adapter_id],
                    fetched_since=now - timedelta(seconds=staleness),
                )
                answers.append((recalled, bool(recalled)))
            else:
                answers.append(([], False))
        return answers


def _withheld_detail(grant: Grant, wanted: Sequence[str]) -> dict[str, Any]:
    """The audit detail naming record types the catalogue kept back, and why."""
    withheld = {t: grant.withheld[t] for t in wanted if t in grant.withheld}
    return {"withheld": withheld} if withheld else {}
