"""Faulty departments behind real `grpc` adapters: the lookup still answers in time.

The departments run in a separate process on loopback (tests/assets/departments).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from adapters.factory import build_adapter
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.settings import AdapterSettings

DEPARTMENTS = (
    Path(__file__).resolve().parents[1] / "assets" / "departments" / "faulty_department.py"
)
ROOT = Path(__file__).resolve().parents[2]
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="C-F", reason="fault test")
# Under the slow department's 3 s; the hub keeps a fifth of it (0.4 s) for answering,
# which a heavily loaded machine needs.
DEADLINE = 2.0


@pytest.fixture(scope="module")
def departments():
    process = subprocess.Popen(
        [sys.executable, str(DEPARTMENTS)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError("the department process did not start")
    yield json.loads(line)
    process.kill()
    process.wait()


def grpc_adapter(mode: str, port: int, **extra):
    declaration = AdapterSettings(
        id=f"dept.{mode}",
        kind="grpc",
        department=f"{mode} department",
        serves=[{"record_type": "population.resident", "key_kinds": ["ID_CARD"]}],
        options={"target": f"127.0.0.1:{port}"},
        **extra,
    )
    return build_adapter(declaration, f"adapters[{mode}]")


async def lookup(port: int) -> exchange_pb2.LookupResponse:
    """One lookup under a `DEADLINE` the client enforces: an answer is one in time (a late
    one is DEADLINE_EXCEEDED), so no test measures the wall clock, busy machine or not."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        answer: exchange_pb2.LookupResponse = await stub.Lookup(
            exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE), timeout=DEADLINE
        )
        return answer


async def test_every_fault_gets_its_status_and_the_answer_comes_in_time(start_hub, departments):
    adapters = [grpc_adapter(mode, port) for mode, port in departments.items()]
    server = await start_hub(adapters)
    answer = await lookup(server.port)
    outcomes = {s.adapter_id: common_pb2.SourceOutcome.Name(s.outcome) for s in answer.sources}
    assert outcomes == {
        "dept.ok": "SOURCE_OUTCOME_OK",
        "dept.hang": "SOURCE_OUTCOME_TIMEOUT",
        "dept.slow": "SOURCE_OUTCOME_TIMEOUT",
        "dept.error": "SOURCE_OUTCOME_ERROR",
        "dept.malformed": "SOURCE_OUTCOME_OK",
        "dept.flap": "SOURCE_OUTCOME_OK",
    }
    assert answer.partial
    by_source = {}
    for record in answer.records:
        by_source.setdefault(record.provenance.adapter_id, []).append(
            record.provenance.source_record_id
        )
    assert by_source == {
        "dept.ok": ["ok-1"],
        "dept.malformed": ["malformed-1"],
        "dept.flap": ["flap-1"],
    }
    rejected = {r.source_record_id: r.reason for r in answer.rejected}
    assert set(rejected) == {"malformed-bad-key", "malformed-bad-date"}
    assert "check character" in rejected["malformed-bad-key"]
    assert "birth_date" in rejected["malformed-bad-date"]
    error = next(s for s in answer.sources if s.adapter_id == "dept.error")
    assert "INTERNAL" in error.detail


async def test_a_broken_source_trips_its_circuit_and_stops_costing_time(start_hub, departments):
    broken = grpc_adapter("error", departments["error"])
    healthy = grpc_adapter("ok", departments["ok"])
    server = await start_hub([broken, healthy])
    outcomes = []
    for _ in range(broken.spec.failure_threshold + 2):
        answer = await lookup(server.port)
        source = next(s for s in answer.sources if s.adapter_id == "dept.error")
        outcomes.append(common_pb2.SourceOutcome.Name(source.outcome))
        assert [r.provenance.adapter_id for r in answer.records] == ["dept.ok"]
    threshold = broken.spec.failure_threshold
    assert outcomes == ["SOURCE_OUTCOME_ERROR"] * threshold + ["SOURCE_OUTCOME_CIRCUIT_OPEN"] * 2


async def test_a_hung_source_never_delays_healthy_ones_past_the_deadline(start_hub, departments):
    adapters = [grpc_adapter("hang", departments["hang"], timeout_seconds=30)]
    adapters.append(grpc_adapter("ok", departments["ok"]))
    server = await start_hub(adapters)
    for _ in range(3):
        answer = await lookup(server.port)
        assert [r.provenance.source_record_id for r in answer.records] == ["ok-1"]
