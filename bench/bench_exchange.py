"""Exchange benchmarks: hub overhead against a bare gRPC echo, and fan-out latency.

Both run a real hub (grpc.aio on loopback, SQLite store in a temporary folder) and a
real client in the same process and run, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from adapters.base import Adapter, AdapterSpec
from bench.harness import Ratio
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.hub import Hub
from exchange.logs import configure_logging
from exchange.server import HubServer
from exchange.settings import RecordTypeSettings, load_settings

RECORD_TYPE = "population.resident"
FIELDS = {
    "name": "张三",
    "gender": "男",
    "birth_date": "1949-12-31",
    "ethnicity": "汉族",
    "household_address": "北京市西城区某街道12号",
    "household_division": "110105",
}
SUBJECT = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="BENCH-1", reason="benchmark")
CONCURRENCY = 16
SECONDS = 1.5
ROUNDS = 5
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "tongban.example.toml"
TONGBAN = str(Path(sys.executable).parent / "tongban")
# The h2load comparison runs `tongban serve` on the example configuration: its demo
# population adapter answers one record in process, audit and receipts on.
H2LOAD_LOOKUP = exchange_pb2.LookupRequest(
    subject=SUBJECT, purpose=PURPOSE, record_types=["population.resident"]
)
H2LOAD_CLIENTS = 16
H2LOAD_STREAMS = 4
H2LOAD_SECONDS = 4
H2LOAD_ROUNDS = 3


class OneRecord(Adapter):
    """Answers one fixed record after `delay` seconds."""

    delay = 0.0

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord]:
        if self.delay:
            await asyncio.sleep(self.delay)
        return [SourceRecord(RECORD_TYPE, f"R-{self.adapter_id}", subject, FIELDS)]


def _spec(adapter_id: str) -> AdapterSpec:
    return AdapterSpec(
        adapter_id=adapter_id,
        kind="python",
        department="bench",
        serves={RECORD_TYPE: frozenset({KeyKind.ID_CARD})},
        max_concurrency=1024,
    )


async def _throughput(call: Callable[[], Awaitable[Any]]) -> float:
    """Calls per second with CONCURRENCY callers for SECONDS, after a warm-up."""
    for _ in range(20):
        await call()
    done = 0
    stop = time.perf_counter() + SECONDS

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


class Echo:
    """A bare grpc.aio service answering a LookupResponse-sized payload, no hub logic."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return self.payload


async def _start_echo(payload: bytes) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    echo = Echo(payload)
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Call": grpc.unary_unary_rpc_method_handler(echo.handle)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _hub(folder: Path, adapters: list[Adapter]) -> HubServer:
    settings = load_settings(
        None,
        data_dir=str(folder),
        record_types={RECORD_TYPE: RecordTypeSettings(fields=dict.fromkeys(FIELDS, "string"))},
        **{"logging.level": "ERROR"},
    )
    server = HubServer(Hub.open(settings, adapters), "127.0.0.1:0")
    await server.start()
    return server


async def _overhead(folder: Path) -> Ratio:
    """Hub and echo are measured in alternating rounds; the median round ratio counts."""
    hub = await _hub(folder / "overhead", [OneRecord(_spec("one"))])
    request = exchange_pb2.LookupRequest(subject=SUBJECT, purpose=PURPOSE)
    hub_channel = grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}")
    stub = exchange_pb2_grpc.ExchangeServiceStub(hub_channel)
    sample = await stub.Lookup(request)
    echo, port = await _start_echo(sample.SerializeToString())
    echo_channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    raw_request = request.SerializeToString()
    echo_call = echo_channel.unary_unary(
        "/bench.Echo/Call",
        request_serializer=lambda b: b,
        response_deserializer=exchange_pb2.LookupResponse.FromString,
    )
    rounds: list[tuple[float, float]] = []
    for _ in range(ROUNDS):
        hub_qps = await _throughput(lambda: stub.Lookup(request, timeout=5))
        echo_qps = await _throughput(lambda: echo_call(raw_request, timeout=5))
        rounds.append((hub_qps, echo_qps))
    await hub_channel.close()
    await echo_channel.close()
    await hub.stop(grace=1)
    await echo.stop(0)
    for number, (hub_qps, echo_qps) in enumerate(rounds, start=1):
        print(
            f"round {number}: hub Lookup {hub_qps:,.0f} calls/s, bare echo of the same "
            f"{len(sample.SerializeToString())}-byte answer {echo_qps:,.0f} calls/s "
            f"(ratio {hub_qps / echo_qps:.2f})"
        )
    hub_qps, echo_qps = sorted(rounds, key=lambda r: r[0] / r[1])[len(rounds) // 2]
    return Ratio(
        "exchange: hub Lookup QPS vs bare grpc.aio echo (median round)",
        hub_qps,
        echo_qps,
        0.5,
        "calls/s",
    )


async def _fan_out(folder: Path) -> Ratio:
    adapters: list[Adapter] = []
    for index in range(8):
        adapter = OneRecord(_spec(f"dept-{index}"))
        adapter.delay = 0.020
        adapters.append(adapter)
    hub = await _hub(folder / "fanout", adapters)
    request = exchange_pb2.LookupRequest(subject=SUBJECT, purpose=PURPOSE)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        for _ in range(20):
            await stub.Lookup(request, timeout=5)
        for _ in range(300):
            started = time.perf_counter()
            answer = await stub.Lookup(request, timeout=5)
            latencies.append(time.perf_counter() - started)
            assert len(answer.records) == 8, "every source must answer"
    await hub.stop(grace=1)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"fan-out to 8 sources answering after 20 ms: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return Ratio(
        "exchange: fan-out p50 vs one source's 20 ms",
        p50,
        20.0,
        1.3,
        "ms",
        higher_is_better=False,
    )


def _h2load_overhead(folder: Path) -> list[Ratio]:
    """Hub Lookup vs bare echo, each its own process pinned to core 0, h2load on core 1."""
    if shutil.which("h2load") is None or shutil.which("taskset") is None:
        print("h2load comparison skipped: needs h2load (nghttp2-client) and taskset")
        return []
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = str(cores[0]), str(cores[-1])
    body = folder / "lookup.body"
    message = H2LOAD_LOOKUP.SerializeToString()
    body.write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    path = "/tongban.v1.ExchangeService/Lookup"
    env = {
        **os.environ,
        "TONGBAN_DATA_DIR": str(folder / "h2load-hub"),
        "TONGBAN_HTTP__LISTEN": "",
        "TONGBAN_LOGGING__LEVEL": "ERROR",
    }
    hub_port, echo_port = _free_port(), _free_port()
    hub = subprocess.Popen(
        ["taskset", "-c", server_core, TONGBAN, "serve", "--config", str(EXAMPLE),
         "--listen", f"127.0.0.1:{hub_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    echo: subprocess.Popen[bytes] | None = None
    rounds: list[tuple[float, float]] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hub_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            answer = channel.unary_unary(path)(message, timeout=30)
        payload = folder / "lookup.answer"
        payload.write_bytes(answer)
        echo = subprocess.Popen(
            ["taskset", "-c", server_core, sys.executable, "-m", "bench.echo_server",
             str(payload), str(echo_port)],
            cwd=ROOT,
        )  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{echo_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        for _ in range(H2LOAD_ROUNDS):
            hub_rate = _h2load(client_core, hub_port, path, body)
            echo_rate = _h2load(client_core, echo_port, path, body)
            rounds.append((hub_rate, echo_rate))
            print(
                f"h2load round: hub Lookup {hub_rate:,.0f}/s, bare echo of the same "
                f"{len(answer)}-byte answer {echo_rate:,.0f}/s (ratio {hub_rate / echo_rate:.2f})"
            )
    finally:
        for process in (hub, echo):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    hub_rate, echo_rate = sorted(rounds, key=lambda r: r[0] / r[1])[len(rounds) // 2]
    return [
        Ratio(
            f"exchange: hub Lookup vs bare grpc.aio echo, h2load -t1 -c{H2LOAD_CLIENTS} "
            f"-m{H2LOAD_STREAMS} on core {client_core}, servers on core {server_core} "
            "(median round)",
            hub_rate,
            echo_rate,
            0.5,
            "calls/s",
        )
    ]


def _h2load(core: str, port: int, path: str, body: Path) -> float:
    answer = subprocess.run(
        ["taskset", "-c", core, "h2load", "-t", "1", "-c", str(H2LOAD_CLIENTS),
         "-m", str(H2LOAD_STREAMS), "-D", str(H2LOAD_SECONDS), "--warm-up-time", "1",
         "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    done = re.search(r"requests: .* (\d+) succeeded", answer.stdout)
    assert done, answer.stdout
    return int(done.group(1)) / H2LOAD_SECONDS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> list[Ratio]:
    configure_logging("ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        return [
            asyncio.run(_overhead(folder)),
            *_h2load_overhead(folder),
            asyncio.run(_fan_out(folder)),
        ]
