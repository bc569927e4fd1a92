"""LookupRouter: parallel fan-out under one deadline, one status per source. No network."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.base import Adapter, AdapterSpec, Rejection
from adapters.resilience import RetryPolicy
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey, parse_key
from exchange.record_types import RecordTypes
from exchange.routing import LookupRouter, SourceOutcome
from exchange.settings import RecordTypeSettings

PURPOSE = Purpose("C-1", "test")
PERSON = parse_key(KeyKind.ID_CARD, "11010519491231002X")
TYPE = "population.resident"


def spec(adapter_id: str, **extra) -> AdapterSpec:
    extra.setdefault("serves", {TYPE: frozenset({KeyKind.ID_CARD})})
    return AdapterSpec(adapter_id=adapter_id, kind="python", department="d", **extra)


def record(subject: SubjectKey, source_id: str = "r1", **fields) -> SourceRecord:
    return SourceRecord(TYPE, source_id, subject, fields or {"name": "张三"})


class Answering(Adapter):
    def __init__(self, spec: AdapterSpec, delay: float = 0.0, answer=None) -> None:
        super().__init__(spec)
        self.delay = delay
        self.answer = answer
        self.calls = 0

    async def _fetch(self, subject, record_types, purpose):
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.answer if self.answer is not None else [record(subject)]


class Failing(Adapter):
    def __init__(self, spec: AdapterSpec, error: BaseException) -> None:
        super().__init__(spec)
        self.error = error
        self.calls = 0

    async def _fetch(self, subject, record_types, purpose):
        self.calls += 1
        raise self.error


async def test_sources_are_asked_in_parallel():
    adapters = [Answering(spec(f"a{i}"), delay=0.2) for i in range(8)]
    started = time.monotonic()
    results = await LookupRouter(adapters).lookup(PERSON, (), PURPOSE, deadline=5)
    assert time.monotonic() - started < 0.6
    assert [r.outcome for r in results] == [SourceOutcome.OK] * 8


async def test_each_source_gets_its_own_status_within_the_deadline():
    adapters = [
        Answering(spec("fast")),
        Answering(spec("slow"), delay=10),
        Failing(spec("broken", retry=RetryPolicy(attempts=1)), ValueError("bad state")),
        Answering(spec("empty"), answer=[]),
    ]
    started = time.monotonic()
    results = await LookupRouter(adapters).lookup(PERSON, (), PURPOSE, deadline=0.3)
    assert time.monotonic() - started < 0.5
    assert {r.adapter_id: r.outcome for r in results} == {
        "fast": SourceOutcome.OK,
        "slow": SourceOutcome.TIMEOUT,
        "broken": SourceOutcome.ERROR,
        "empty": SourceOutcome.NOT_FOUND,
    }
    broken = next(r for r in results if r.adapter_id == "broken")
    assert "ValueError: bad state" in broken.detail


async def test_only_retryable_failures_are_retried():
    refused = Failing(spec("refused"), ConnectionRefusedError("refused"))
    wrong = Failing(spec("wrong"), KeyError("field"))
    await LookupRouter([refused, wrong]).lookup(PERSON, (), PURPOSE, deadline=2)
    assert refused.calls == 3
    assert wrong.calls == 1


async def test_retries_stop_at_the_deadline():
    slow_policy = RetryPolicy(attempts=50, base_delay=0.1, max_delay=0.1)
    refused = Failing(spec("refused", retry=slow_policy), ConnectionRefusedError())
    started = time.monotonic()
    (result,) = await LookupRouter([refused]).lookup(PERSON, (), PURPOSE, deadline=0.3)
    assert time.monotonic() - started < 0.45
    assert result.outcome is SourceOutcome.ERROR
    assert refused.calls < 50


async def test_circuit_opens_after_a_failure_run_and_skips_the_source():
    broken = Failing(
        spec("broken", failure_threshold=2, cooldown=60, retry=RetryPolicy(attempts=1)),
        ValueError("x"),
    )
    router = LookupRouter([broken])
    outcomes = [(await router.lookup(PERSON, (), PURPOSE, deadline=1))[0].outcome for _ in range(4)]
    assert outcomes == [
        SourceOutcome.ERROR,
        SourceOutcome.ERROR,
        SourceOutcome.CIRCUIT_OPEN,
        SourceOutcome.CIRCUIT_OPEN,
    ]
    assert broken.calls == 2


async def test_malformed_records_are_rejected_one_by_one():
    types = RecordTypes({TYPE: RecordTypeSettings(fields={"name": "string", "age": "integer"})})
    answer = [
        record(PERSON, "good", name="张三", age=30),
        record(PERSON, "bad-type", name="李四", age="thirty"),
        record(PERSON, "undeclared", name="王五", secret="x"),
        Rejection("bad-key", "ID_CARD: check character"),
        "not a record",
    ]
    (result,) = await LookupRouter([Answering(spec("a"), answer=answer)], types.problem).lookup(
        PERSON, (), PURPOSE, deadline=1
    )
    assert result.outcome is SourceOutcome.OK
    assert [r.source_record_id for r in result.records] == ["good"]
    reasons = {r.source_record_id: r.reason for r in result.rejected}
    assert reasons["bad-type"] == "field 'age' must be integer, got str"
    assert reasons["undeclared"] == "field 'secret' is not declared for population.resident"
    assert reasons["bad-key"] == "ID_CARD: check character"
    assert reasons["#4"] == "not a record but a str"


async def test_only_malformed_records_is_an_error_not_a_miss():
    types = RecordTypes({TYPE: RecordTypeSettings(fields={"age": "integer"})})
    adapter = Answering(spec("a"), answer=[record(PERSON, "x", age="old")])
    (result,) = await LookupRouter([adapter], types.problem).lookup(PERSON, (), PURPOSE, deadline=1)
    assert result.outcome is SourceOutcome.ERROR
    assert len(result.rejected) == 1


@pytest.mark.parametrize(
    ("subject", "serves", "expected_key"),
    [
        (PERSON, {KeyKind.ID_CARD}, PERSON),
        (
            parse_key(KeyKind.USCC, "91350100M000100Y43"),
            {KeyKind.ORG_CODE},
            SubjectKey(KeyKind.ORG_CODE, "M000100Y-4"),
        ),
        (
            parse_key(KeyKind.USCC, "91350100M000100Y43"),
            {KeyKind.USCC, KeyKind.ORG_CODE},
            parse_key(KeyKind.USCC, "91350100M000100Y43"),
        ),
        (PERSON, {KeyKind.USCC}, None),
    ],
    ids=["own key", "embedded org code", "own key preferred", "not served"],
)
def test_routes_by_own_key_else_by_embedded_key(subject, serves, expected_key):
    adapter = Answering(spec("a", serves={TYPE: frozenset(serves)}))
    routes = LookupRouter([adapter]).routes(subject, ())
    assert [r.subject for r in routes] == ([expected_key] if expected_key else [])


def test_unrequested_record_types_are_not_routed():
    adapter = Answering(spec("a"))
    assert LookupRouter([adapter]).routes(PERSON, ("market.business_license",)) == []
