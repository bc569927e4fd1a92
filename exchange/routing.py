"""Fan-out of one lookup to every adapter that serves it, under one deadline.

`LookupRouter` takes adapters as objects and does no I/O of its own, so it can be
tested without a network. Each source gets its own status; a slow or broken source
never delays the answer past the deadline and never fails the whole lookup.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from adapters.base import Adapter, CircuitOpen, Rejection
from domain.errors import AdapterError, AdapterTimeout
from domain.records import Purpose, SourceRecord
from domain.subjects import SubjectKey
from exchange.metrics import ADAPTER_ERRORS, ADAPTER_LATENCY


class SourceOutcome(enum.StrEnum):
    """What happened when one source was consulted."""

    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    DENIED = "DENIED"
    STALE_SERVED = "STALE_SERVED"


@dataclass(frozen=True)
class SourceResult:
    """One consulted source's answer within a lookup."""

    adapter_id: str
    department: str
    outcome: SourceOutcome
    latency: float
    records: tuple[SourceRecord, ...] = ()
    detail: str = ""
    rejected: tuple[Rejection, ...] = ()
    record_types: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """True when the source did not answer (so a stored copy may stand in)."""
        return self.outcome in (
            SourceOutcome.TIMEOUT,
            SourceOutcome.ERROR,
            SourceOutcome.CIRCUIT_OPEN,
        )


@dataclass(frozen=True)
class Route:
    """One adapter to ask, with the key to ask it by and the record types it serves."""

    adapter: Adapter
    subject: SubjectKey
    record_types: tuple[str, ...]


RecordCheck = Callable[[SourceRecord], str | None]
"""Returns why a record breaks its record type's declaration, or None when it is fine."""

DownCheck = Callable[[Adapter], str | None]
"""Returns why an adapter is marked down (and must not be called), or None."""


class LookupRouter:
    """Routes a subject lookup to the adapters serving its key kind and record types.

    `check` validates every record a source returns; a record that fails is dropped
    from the answer and reported as rejected with the reason. `down` names adapters
    that are marked down: they are reported as ERROR without being called.
    """

    def __init__(
        self,
        adapters: Sequence[Adapter],
        check: RecordCheck | None = None,
        down: DownCheck | None = None,
    ) -> None:
        self.adapters = tuple(adapters)
        self._check = check
        self._down = down

    def routes(self, subject: SubjectKey, record_types: Collection[str]) -> list[Route]:
        """Adapters to consult: by the subject's own key, else by a key it embeds.

        A USCC subject also reaches sources keyed by the organization code it embeds.
        """
        routes: list[Route] = []
        for adapter in self.adapters:
            for key in (subject, *subject.related()):
                served = adapter.spec.record_types_for(key.kind, record_types)
                if served:
                    routes.append(Route(adapter, key, tuple(served)))
                    break
        return routes

    async def lookup(
        self,
        subject: SubjectKey,
        record_types: Collection[str],
        purpose: Purpose,
        *,
        deadline: float,
    ) -> list[SourceResult]:
        """Ask every route in parallel; return one result per consulted source.

        `deadline` is the number of seconds the caller allows. Results come back in
        the adapters' configured order, whatever order they completed in.
        """
        expires = time.monotonic() + deadline
        routes = self.routes(subject, record_types)
        return list(await asyncio.gather(*(self._ask(r, purpose, expires) for r in routes)))

    async def _ask(self, route: Route, purpose: Purpose, expires: float) -> SourceResult:
        adapter = route.adapter
        started = time.monotonic()

        def result(
            outcome: SourceOutcome,
            records: Sequence[SourceRecord] = (),
            detail: str = "",
            rejected: Sequence[Rejection] = (),
        ) -> SourceResult:
            latency = time.monotonic() - started
            ADAPTER_LATENCY.labels(adapter=adapter.adapter_id, outcome=outcome).observe(latency)
            if outcome not in (SourceOutcome.OK, SourceOutcome.NOT_FOUND):
                ADAPTER_ERRORS.labels(adapter=adapter.adapter_id, outcome=outcome).inc()
            return SourceResult(
                adapter.adapter_id,
                adapter.spec.department,
                outcome,
                latency,
                tuple(records),
                detail,
                tuple(rejected),
                route.record_types,
            )

        down = self._down(adapter) if self._down else None
        if down is not None:
            return result(SourceOutcome.ERROR, detail=down)
        remaining = expires - started
        if remaining <= 0:
            return result(SourceOutcome.TIMEOUT, detail="no time left before the deadline")
        try:
            answer = await adapter.fetch(
                route.subject, route.record_types, purpose, deadline=remaining
            )
        except CircuitOpen as exc:
            return result(SourceOutcome.CIRCUIT_OPEN, detail=exc.message)
        except AdapterTimeout as exc:
            return result(SourceOutcome.TIMEOUT, detail=exc.message)
        except AdapterError as exc:
            return result(SourceOutcome.ERROR, detail=exc.message)
        records, rejected = self._valid(answer.records, list(answer.rejected))
        if not records and rejected:
            detail = f"every record the source sent was malformed ({len(rejected)})"
            return result(SourceOutcome.ERROR, detail=detail, rejected=rejected)
        if not records:
            return result(SourceOutcome.NOT_FOUND, rejected=rejected)
        return result(SourceOutcome.OK, records=records, rejected=rejected)

    def _valid(
        self, records: Sequence[SourceRecord], rejected: list[Rejection]
    ) -> tuple[list[SourceRecord], list[Rejection]]:
        if self._check is None:
            return list(records), rejected
        valid: list[SourceRecord] = []
        for record in records:
            problem = self._check(record)
            if problem is None:
                valid.append(record)
            else:
                rejected.append(Rejection(record.source_record_id, problem))
        return valid, rejected
