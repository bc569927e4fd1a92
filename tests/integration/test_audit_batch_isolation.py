"""Issue 17 §2: one caller's bad audit entry must not fail the other callers whose entries
share its group commit. Bad entries are pushed straight into the trail (as if one slipped
past input validation) while good callers look up through the real server."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest

from domain.errors import StoreError
from exchange.auth.policy import Caller
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc

PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
GOOD_CLIENTS = 8
LOOKUPS_EACH = 12

# NUL is refused by PostgreSQL's text and JSONB; NaN by the canonical JSON of every leaf.
BAD_DETAILS = [
    {"purpose": {"case_id": "x\x00y", "reason": "audit"}},
    {"purpose": {"case_id": "C-1", "reason": "audit"}, "score": math.nan},
]


@pytest.mark.parametrize("bad_detail", BAD_DETAILS, ids=["nul", "nan"])
async def test_a_bad_entry_fails_only_its_own_call(start_hub, database_url, bad_detail):
    server = await start_hub()
    trail = server.hub.audit
    refused_by_store = bad_detail["purpose"]["case_id"] != "x\x00y" or "postgresql" in database_url
    stop = asyncio.Event()
    bad_outcomes: list[str] = []

    async def bad_caller() -> None:
        attacker = Caller(organization="91350100M000100Y43", system="attacker")
        while not stop.is_set():
            try:
                await trail.record(trail.entry(attacker, "LOOKUP", "OK", **bad_detail))
            except StoreError:
                bad_outcomes.append("refused")
            else:
                bad_outcomes.append("written")
            await asyncio.sleep(0)

    async def good_caller(channel: grpc.aio.Channel, n: int) -> list[int]:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        leaves = []
        for round_ in range(LOOKUPS_EACH):
            answer = await stub.Lookup(
                exchange_pb2.LookupRequest(
                    subject=PERSON,
                    purpose=common_pb2.Purpose(case_id=f"G-{n}-{round_}", reason="audit"),
                ),
                timeout=60,
            )
            leaves.append(answer.request_id)
        return leaves

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        attackers = [asyncio.create_task(bad_caller()) for _ in range(2)]
        results = await asyncio.gather(
            *(good_caller(channel, n) for n in range(GOOD_CLIENTS)), return_exceptions=True
        )
        stop.set()
        await asyncio.gather(*attackers)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert bad_outcomes
    if refused_by_store:
        assert set(bad_outcomes) == {"refused"}
    store = server.hub.audit.store
    report = store.verify()
    assert report.intact, report.problem
    cases = {
        s.entry.detail.get("purpose", {}).get("case_id")
        for s in store.entries()
        if s.entry.action == "LOOKUP"
    }
    assert {f"G-{n}-{r}" for n in range(GOOD_CLIENTS) for r in range(LOOKUPS_EACH)} <= cases
