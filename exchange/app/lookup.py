"""Looking a subject up: policy, fan-out, stale serving, minimization and audit, once.

`LookupService.lookup` is what `ExchangeService.Lookup` does on every transport: the
gRPC servicer and the HTTP route turn their wire message into a `SubjectKey`, record
type names and a `Purpose`, call it, and turn the `LookupOutcome` back into a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from adapters.base import Rejection
from domain.errors import InvalidRequest, PermissionDenied, TongbanError
from domain.records import Purpose, StoredRecord
from domain.subjects import SubjectKey
from exchange.audit import lookup_detail
from exchange.auth.policy import Caller, Grant
from exchange.hub import Hub
from exchange.receipts import ConsultedSource, ReturnedRecord, answer_view
from exchange.routing import SourceOutcome, SourceResult
from exchange.settings import RecordTypeSettings

log = structlog.get_logger("tongban.exchange")

MAX_RECORD_TYPES = 64
DENIED_DETAIL = "your access policy does not include this source's record types"


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one consulted source contributed to an answer."""

    adapter_id: str
    outcome: SourceOutcome
    # None for a source that was not asked (DENIED).
    latency: float | None = None
    detail: str = ""
    record_count: int = 0


@dataclass(frozen=True, slots=True)
class ServedRecord:
    """A record as the caller may see it: `fields` are minimized to its grant."""

    record: StoredRecord
    fields: Mapping[str, Any]
    stale: bool = False


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record a source returned that broke its record type, with the reason."""

    adapter_id: str
    source_record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    """The answer to one lookup: records, one report per source, and `partial`."""

    subject: SubjectKey
    records: tuple[ServedRecord, ...]
    sources: tuple[SourceReport, ...]
    rejected: tuple[RejectedRecord, ...]
    partial: bool
    request_id: str
    # The hub's signed receipt of this answer ("" when receipts are off or unsignable).
    receipt: str = ""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One subject of a batch: its outcome, or the error that refused it."""

    index: int
    outcome: LookupOutcome | None = None
    error: TongbanError | None = None


class LookupService:
    """Lookups for callers, within their grants, each one audited."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def record_types(self, requested: Sequence[str]) -> tuple[str, ...]:
        """The requested record type names, checked against the declared ones.

        Raises `InvalidRequest` naming ``record_types[i]`` for an unknown type.
        """
        declared = self.hub.settings.record_types
        if len(requested) > MAX_RECORD_TYPES:
            raise InvalidRequest("record_types", f"at most {MAX_RECORD_TYPES} record types")
        for position, name in enumerate(requested):
            if name not in declared:
                raise InvalidRequest(
                    f"record_types[{position}]", f"unknown record type {name[:80]!r}"
                )
        return tuple(dict.fromkeys(requested))

    def deadline(self, remaining: float | None) -> float:
        """Seconds the fan-out may take, given the caller's own remaining time (if any)."""
        if remaining is None:
            return self.hub.settings.exchange.default_deadline_seconds
        # Keep part of the caller's deadline for auditing and answering: a fifth of it,
        # at least 50 ms and at most 0.5 s. On a busy machine that work takes longer than
        # on an idle one, and an answer past the deadline is no answer at all.
        return max(0.0, remaining - min(0.5, max(0.05, remaining * 0.2)))

    @property
    def max_staleness(self) -> float:
        """The most staleness (seconds) a caller may allow (`exchange.max_staleness_seconds`)."""
        return self.hub.settings.exchange.max_staleness_seconds

    async def lookup(
        self,
        caller: Caller,
        subject: SubjectKey,
        record_types: tuple[str, ...],
        purpose: Purpose,
        deadline: float,
        staleness: float,
        request_id: str = "",
    ) -> LookupOutcome:
        """Look up `subject` for `caller`, within its grant; audit the access.

        `record_types` must come from `record_types()`; empty means every declared type.
        Raises `PermissionDenied` (audited) for a reason or record type the caller's
        policy does not allow, and `StoreError` when the audit entry cannot be written
        (then nothing is answered).
        """
        # The sharing catalogue's seam: the static policy after catalogue and store grants.
        grant = await self.hub.access.effective_grant(caller, self.hub.policy.grant(caller))
        await self._refuse_unless_allowed(caller, grant, subject, record_types, purpose, request_id)
        wanted = record_types or tuple(self.hub.settings.record_types)
        types = grant.readable_types(wanted)
        router = self.hub.router
        results = await router.lookup(subject, types, purpose, deadline=deadline) if types else []
        answers = await self._answers(subject, results, staleness)
        served: list[ServedRecord] = []
        sources: list[SourceReport] = []
        rejected: list[RejectedRecord] = []
        fields_returned: dict[str, set[str]] = {}
        for result, (records, stale) in zip(results, answers, strict=True):
            outcome, detail = result.outcome, result.detail
            if stale:
                outcome, detail = SourceOutcome.STALE_SERVED, f"served from the store: {detail}"
            for record in records:
                fields = _in_declared_order(
                    grant.minimize(record.record_type, record.fields),
                    self.hub.settings.record_types.get(record.record_type),
                )
                fields_returned.setdefault(record.record_type, set()).update(fields)
                if record.department_signature and set(fields) != set(record.fields):
                    # The department signed every field: its JWS would show (and its
                    # signature confirm guesses of) the fields this caller may not see.
                    record = replace(record, department_signature=None)
                served.append(ServedRecord(record, fields, stale))
            sources.append(
                SourceReport(result.adapter_id, outcome, result.latency, detail, len(records))
            )
            rejected.extend(_rejected(result.adapter_id, r) for r in result.rejected)
        denied_types = set(wanted) - set(types)
        consulted = {r.adapter_id for r in results}
        for route in router.routes(subject, denied_types) if denied_types else ():
            withheld = [grant.withheld[t] for t in route.record_types if t in grant.withheld]
            adapter_id = route.adapter.adapter_id
            if adapter_id not in consulted:
                consulted.add(adapter_id)
                detail = "; ".join(withheld) if withheld else DENIED_DETAIL
                sources.append(SourceReport(adapter_id, SourceOutcome.DENIED, detail=detail))
            elif withheld:
                # A source also answering other types: say what it was not asked for.
                at = next(i for i, s in enumerate(sources) if s.adapter_id == adapter_id)
                told = "; ".join(filter(None, (sources[at].detail, *withheld)))
                sources[at] = replace(sources[at], detail=told)
        partial = any(r.outcome not in (SourceOutcome.OK, SourceOutcome.NOT_FOUND) for r in results)
        audit = self.hub.audit
        audited = await audit.record(
            audit.entry(
                caller,
                "LOOKUP",
                "PARTIAL" if partial else "OK",
                subject,
                **lookup_detail(
                    list(types),
                    {k: sorted(v) for k, v in fields_returned.items()},
                    purpose.case_id,
                    purpose.reason,
                    {s.adapter_id: s.outcome.value for s in sources},
                    request_id,
                ),
                **_withheld_detail(grant, wanted),
            )
        )
        receipt = ""
        if self.hub.receipts is not None:
            latencies = {r.adapter_id: r.latency for r in results}
            view = answer_view(
                request_id,
                subject,
                [
                    ReturnedRecord(r.record, r.fields, r.stale, r.record.department_signature)
                    for r in served
                ],
                [
                    ConsultedSource(
                        s.adapter_id,
                        s.outcome.value,
                        latencies.get(s.adapter_id, 0.0),
                        s.record_count,
                    )
                    for s in sources
                ],
                partial,
            )
            # Inline: one Ed25519 signature costs less than a hop to the thread pool.
            receipt = self.hub.receipts.issue(
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
            records=len(served),
            partial=partial,
            case_id=purpose.case_id,
        )
        return LookupOutcome(
            subject, tuple(served), tuple(sources), tuple(rejected), partial, request_id, receipt
        )

    def check_batch(self, count: int, max_concurrency: int) -> None:
        """Raises `InvalidRequest` for an empty or too large batch or a bad concurrency."""
        limit = self.hub.settings.exchange.max_batch_subjects
        if not count:
            raise InvalidRequest("subjects", "at least one subject is required")
        if count > limit:
            raise InvalidRequest("subjects", f"at most {limit} subjects per call")
        if max_concurrency < 0:
            raise InvalidRequest("max_concurrency", "must not be negative")

    async def batch(
        self,
        caller: Caller,
        subjects: Sequence[SubjectKey | InvalidRequest],
        record_types: tuple[str, ...],
        purpose: Purpose,
        deadline: float,
        staleness: float,
        *,
        max_concurrency: int = 0,
        request_id: str = "",
    ) -> AsyncIterator[BatchItem]:
        """Look many subjects up, yielding each answer as it is ready (not in order).

        A subject the transport could not parse comes in as its `InvalidRequest` and
        goes out as that item's error; errors of one subject never end the batch.
        Raises `InvalidRequest` (before anything is looked up) for a bad batch.
        """
        self.check_batch(len(subjects), max_concurrency)
        slots = asyncio.Semaphore(max_concurrency or self.hub.settings.exchange.batch_concurrency)

        async def one(index: int, subject: SubjectKey | InvalidRequest) -> BatchItem:
            if isinstance(subject, InvalidRequest):
                return BatchItem(index, error=subject)
            try:
                async with slots:
                    outcome = await self.lookup(
                        caller, subject, record_types, purpose, deadline, staleness, request_id
                    )
            except TongbanError as exc:
                return BatchItem(index, error=exc)
            return BatchItem(index, outcome=outcome)

        for finished in asyncio.as_completed([one(i, s) for i, s in enumerate(subjects)]):
            yield await finished

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
        now = datetime.now(UTC)
        answers: list[tuple[list[StoredRecord], bool]] = []
        for result in results:
            if result.records:
                fetched = [
                    StoredRecord.of(
                        r,
                        adapter_id=result.adapter_id,
                        department=result.department,
                        fetched_at=now,
                        hash_alg=self.hub.records.hash_alg,
                    )
                    for r in result.records
                ]
                await self.hub.writer.submit(
                    result.adapter_id, result.department, result.records, fetched, now
                )
                signed = {
                    (r.adapter_id, r.record_type, r.source_record_id): r.department_signature
                    for r in fetched
                    if r.department_signature
                }
                if signed and self.hub.signatures is not None:
                    await asyncio.to_thread(self.hub.signatures.keep, signed)
                answers.append((fetched, False))
            elif result.failed and staleness > 0:
                recalled = await asyncio.to_thread(
                    self.hub.records.find,
                    subject,
                    result.record_types,
                    adapter_ids=[result.adapter_id],
                    fetched_since=now - timedelta(seconds=staleness),
                )
                if recalled and self.hub.signatures is not None:
                    # A stale copy still proves its origin: its department's signature.
                    kept = await asyncio.to_thread(
                        self.hub.signatures.find,
                        [(r.adapter_id, r.record_type, r.source_record_id) for r in recalled],
                    )
                    recalled = [
                        replace(
                            r,
                            department_signature=kept.get(
                                (r.adapter_id, r.record_type, r.source_record_id)
                            ),
                        )
                        for r in recalled
                    ]
                answers.append((recalled, bool(recalled)))
            else:
                answers.append(([], False))
        return answers


def _withheld_detail(grant: Grant, wanted: Sequence[str]) -> dict[str, Any]:
    """The audit detail naming record types the catalogue kept back, and why."""
    withheld = {t: grant.withheld[t] for t in wanted if t in grant.withheld}
    return {"withheld": withheld} if withheld else {}


def _rejected(adapter_id: str, rejection: Rejection) -> RejectedRecord:
    return RejectedRecord(adapter_id, rejection.source_record_id, rejection.reason)


def _in_declared_order(
    fields: Mapping[str, Any], declared: RecordTypeSettings | None
) -> dict[str, Any]:
    """`fields` with the record type's declared fields first, in declaration order, then
    any others in the order they came."""
    order = [name for name in (declared.fields if declared else ()) if name in fields]
    order += [name for name in fields if name not in set(order)]
    return {name: fields[name] for name in order}
