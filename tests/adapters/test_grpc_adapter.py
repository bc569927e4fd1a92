"""The `grpc` adapter against a department service running as a separate process."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.base import AdapterSpec, ChangeKind
from adapters.factory import build_from_spec
from adapters.grpc_adapter import GrpcAdapter
from adapters.resilience import CircuitState, RetryPolicy
from domain.errors import AdapterError
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, parse_key

SERVER = Path(__file__).resolve().parents[1] / "assets" / "adapters" / "grpc_department.py"
REPO = Path(__file__).resolve().parents[2]
RESIDENT = "population.resident"
PURPOSE = Purpose("BJ-2024-0004", "户籍迁移")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
LI = parse_key(KeyKind.ID_CARD, "510107199901013337")
ZHANG = parse_key(KeyKind.ID_CARD, "320106199003071234")  # NOT_FOUND
LIU = parse_key(KeyKind.ID_CARD, "440304198511204567")  # PERMISSION_DENIED
ZHAO = parse_key(KeyKind.ID_CARD, "310115197208150011")  # RESOURCE_EXHAUSTED


@dataclass
class Department:
    process: subprocess.Popen[str]
    target: str

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def start_department(*args: str) -> Department:
    """Start the department process with the venv's python; wait until it listens."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        process.kill()
        process.wait()
        pytest.fail(f"the department service did not start: {line!r}")
    return Department(process, f"127.0.0.1:{int(line.split()[1])}")


@pytest.fixture(scope="module")
def department() -> Iterator[Department]:
    started = start_department()
    yield started
    started.kill()


@pytest.fixture
def own_department() -> Iterator[Department]:
    """A department process of this test's own, slow to stream, for killing mid-test."""
    started = start_department("--stream-delay", "0.3")
    yield started
    started.kill()


Build = Callable[..., GrpcAdapter]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    built: list[GrpcAdapter] = []

    def make(target: str) -> GrpcAdapter:
        spec = AdapterSpec(
            adapter_id="psb.population",
            kind="grpc",
            department="市公安局",
            serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
            options={"target": target},
            timeout=2.0,
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
        )
        adapter = build_from_spec(spec)
        assert isinstance(adapter, GrpcAdapter)
        built.append(adapter)
        return adapter

    yield make
    for adapter in built:
        await adapter.close()


async def test_fetch_converts_and_revalidates_records(build: Build, department: Department) -> None:
    result = await build(department.target).fetch(WANG, [RESIDENT], PURPOSE)
    [record] = result.records
    assert record.source_record_id == "R1"
    assert record.subject == WANG
    # Struct numbers are doubles on the wire; integral ones come back as int.
    assert record.fields == {"name": "王伟", "age": 75, "address": {"city": "北京市"}}
    assert type(record.fields["age"]) is int
    assert record.updated_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    [rejection] = result.rejected
    assert rejection.source_record_id == "R2"
    assert rejection.reason.startswith("subject: ID_CARD: ")
    assert rejection.raw is not None
    assert rejection.raw["source_record_id"] == "R2"


async def test_a_full_width_key_from_the_department_is_normalized(
    build: Build, department: Department
) -> None:
    [record] = (await build(department.target).fetch(LI, [RESIDENT], PURPOSE)).records
    assert record.subject == LI


async def test_status_codes_map_to_outcomes(build: Build, department: Department) -> None:
    adapter = build(department.target)
    assert (await adapter.fetch(ZHANG, [RESIDENT], PURPOSE)).records == ()
    with pytest.raises(AdapterError) as denied:
        await adapter.fetch(LIU, [RESIDENT], PURPOSE)
    assert denied.value.message.endswith("PERMISSION_DENIED: the hub may not read this")
    assert not denied.value.retryable
    with pytest.raises(AdapterError) as exhausted:
        await adapter.fetch(ZHAO, [RESIDENT], PURPOSE)
    assert exhausted.value.message.endswith("RESOURCE_EXHAUSTED: quota used up")
    assert exhausted.value.retryable


async def test_changes_stream_in_batches_and_resume(build: Build, department: Department) -> None:
    adapter = build(department.target)
    batches = [b async for b in adapter.changes(None, batch_size=2)]
    assert [b.cursor for b in batches] == ["2", "4", "5"]
    assert batches[0].total_estimate == 5
    changes = [c for b in batches for c in b.changes]
    assert [(c.kind, c.source_record_id) for c in changes] == [
        (ChangeKind.UPSERT, "R1"),
        (ChangeKind.UPSERT, "R5"),
        (ChangeKind.REJECTED, "R2"),
        (ChangeKind.DELETE, "R9"),
        (ChangeKind.UPSERT, "R6"),
    ]
    assert isinstance(changes[1].record, SourceRecord)
    assert changes[1].record.subject == LI
    assert changes[2].reason.startswith("subject: ID_CARD: ")
    resumed = [b async for b in adapter.changes("4", batch_size=2)]
    assert [c.source_record_id for b in resumed for c in b.changes] == ["R6"]


async def test_a_killed_department_is_a_retryable_failure(
    build: Build, own_department: Department
) -> None:
    adapter = build(own_department.target)
    assert len((await adapter.fetch(WANG, [RESIDENT], PURPOSE)).records) == 1
    own_department.kill()
    with pytest.raises(AdapterError) as caught:
        await adapter.fetch(WANG, [RESIDENT], PURPOSE)
    assert caught.value.retryable
    assert "UNAVAILABLE" in caught.value.message


async def test_a_department_killed_mid_stream_is_a_retryable_failure(
    build: Build, own_department: Department
) -> None:
    adapter = build(own_department.target)
    stream = adapter.changes(None, batch_size=2)
    first = await anext(stream)
    assert first.cursor == "2"
    own_department.kill()
    with pytest.raises(AdapterError) as caught:
        await anext(stream)
    assert caught.value.retryable
    assert "UNAVAILABLE" in caught.value.message
    await stream.aclose()


async def test_a_department_back_after_a_long_outage_is_reached_within_the_cooldown() -> None:
    """After the department answers again, the first OK comes within cool-down + 1 s.

    A long outage grows gRPC's default reconnect backoff (1 s x 1.6 per failed attempt, up
    to 120 s) past that, and a half-open probe that fails fast on a channel still backing
    off opens the circuit for another cool-down: neither may hold a department back.
    """
    cooldown = 1.0
    spec = AdapterSpec(
        adapter_id="psb.population",
        kind="grpc",
        department="市公安局",
        serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
        timeout=2.0,
        retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05),
        failure_threshold=2,
        cooldown=cooldown,
    )
    first = start_department()
    adapter = build_from_spec(replace(spec, options={"target": first.target}))
    try:
        assert len((await adapter.fetch(WANG, [RESIDENT], PURPOSE)).records) == 1
        first.kill()
        # Keep calling through the outage, as a hall would, so the channel keeps failing
        # to reconnect and its backoff grows.
        outage_ends = time.monotonic() + 9.0
        while time.monotonic() < outage_ends:
            with pytest.raises(AdapterError):
                await adapter.fetch(WANG, [RESIDENT], PURPOSE)
            await asyncio.sleep(0.2)
        assert adapter.circuit_state is not CircuitState.CLOSED
        port = first.target.rsplit(":", 1)[1]
        back = start_department("--port", port)
        try:
            answered = time.monotonic()  # READY: the department serves from here on
            while True:
                try:
                    if (await adapter.fetch(WANG, [RESIDENT], PURPOSE)).records:
                        break
                except AdapterError:
                    pass
                await asyncio.sleep(0.05)
            waited = time.monotonic() - answered
        finally:
            back.kill()
    finally:
        await adapter.close()
        first.kill()
    # The bound is cool-down + 1 s; the slack is for a busy machine's scheduling only (the
    # default backoff after 9 s of outage is 4-10 s, well past it).
    assert waited < cooldown + 1.0 + 1.5, f"first OK {waited:.1f} s after the department was back"
