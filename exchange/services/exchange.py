"""`tongban.v1.ExchangeService`: one question about one subject, every source's answer.

The servicer only translates: protobuf in, `exchange.app.lookup.LookupService` call,
protobuf out. Policy, minimization, stale serving and audit live in the app layer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog

from domain.errors import InvalidRequest, TongbanError
from exchange.app.lookup import LookupOutcome, LookupService
from exchange.auth.identity import current_caller
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.hub import Hub
from exchange.services import convert
from exchange.services.context import CallContext
from exchange.status import status_code_for


def outcome_to_proto(outcome: LookupOutcome) -> exchange_pb2.LookupResponse:
    """A lookup's outcome as the `LookupResponse` message."""
    response = exchange_pb2.LookupResponse(
        subject=convert.subject_to_proto(outcome.subject),
        request_id=outcome.request_id,
        partial=outcome.partial,
        receipt=outcome.receipt,
    )
    response.records.extend(
        convert.record_to_proto(served.record, stale=served.stale, fields=served.fields)
        for served in outcome.records
    )
    response.sources.extend(
        common_pb2.SourceStatus(
            adapter_id=source.adapter_id,
            outcome=common_pb2.SourceOutcome.Value(f"SOURCE_OUTCOME_{source.outcome.value}"),
            latency=None if source.latency is None else convert.duration(source.latency),
            detail=source.detail,
            record_count=source.record_count,
        )
        for source in outcome.sources
    )
    response.rejected.extend(
        common_pb2.RejectedRecord(
            adapter_id=r.adapter_id, source_record_id=r.source_record_id, reason=r.reason
        )
        for r in outcome.rejected
    )
    return response


def _request_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.lookups = LookupService(hub)

    async def Lookup(
        self, request: exchange_pb2.LookupRequest, context: CallContext
    ) -> exchange_pb2.LookupResponse:
        if not request.HasField("subject"):
            raise InvalidRequest("subject", "a subject key is required")
        subject = convert.subject_from_proto(request.subject)
        purpose = convert.purpose_from_proto(request.purpose, request.HasField("purpose"))
        record_types = self.lookups.record_types(request.record_types)
        staleness = convert.duration_seconds(
            request.max_staleness, "max_staleness", at_most=self.lookups.max_staleness
        )
        outcome = await self.lookups.lookup(
            current_caller(),
            subject,
            record_types,
            purpose,
            self.lookups.deadline(context.time_remaining()),
            staleness,
            _request_id(),
        )
        return outcome_to_proto(outcome)

    async def BatchLookup(
        self, request: exchange_pb2.BatchLookupRequest, context: CallContext
    ) -> AsyncIterator[exchange_pb2.BatchLookupResponse]:
        self.lookups.check_batch(len(request.subjects), request.max_concurrency)
        purpose = convert.purpose_from_proto(request.purpose, request.HasField("purpose"))
        record_types = self.lookups.record_types(request.record_types)
        staleness = convert.duration_seconds(
            request.max_staleness, "max_staleness", at_most=self.lookups.max_staleness
        )
        subjects: list[Any] = []
        for index, sent in enumerate(request.subjects):
            try:
                subjects.append(convert.subject_from_proto(sent, field=f"subjects[{index}]"))
            except InvalidRequest as exc:
                subjects.append(exc)
        items = self.lookups.batch(
            current_caller(),
            subjects,
            record_types,
            purpose,
            self.lookups.deadline(context.time_remaining()),
            staleness,
            max_concurrency=request.max_concurrency,
            request_id=_request_id(),
        )
        async for item in items:
            answer = exchange_pb2.BatchLookupResponse(
                index=item.index, subject=request.subjects[item.index]
            )
            if item.outcome is not None:
                answer.result.CopyFrom(outcome_to_proto(item.outcome))
            elif item.error is not None:
                answer.error.CopyFrom(_batch_error(item.error))
            yield answer


def _batch_error(error: TongbanError) -> exchange_pb2.BatchLookupError:
    return exchange_pb2.BatchLookupError(
        code=status_code_for(error).name,
        message=error.message,
        field=getattr(error, "field", ""),
    )
