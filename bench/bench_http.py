"""HTTP/JSON Lookup against gRPC Lookup: the same hub process, adapter and load generator.

One `tongban serve` (example configuration: the demo population adapter answers one
record in process; audit and receipts on) is pinned to one core and serves both
transports; h2load, pinned to the other core, drives each in alternating rounds with
the same number of requests in flight: gRPC over HTTP/2 (16 connections x 4 streams),
the API over HTTP/1.1 keep-alive (64 connections). The median round's ratio counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc

from bench.bench_exchange import EXAMPLE, H2LOAD_LOOKUP, TONGBAN, _free_port
from bench.harness import Ratio
from exchange.logs import configure_logging

IN_FLIGHT = 64
SECONDS = 4
ROUNDS = 3
TARGET = 0.7
GRPC_PATH = "/tongban.v1.ExchangeService/Lookup"
HTTP_BODY = {
    "subject": {"kind": "KEY_KIND_ID_CARD", "value": "11010519491231002X"},
    "purpose": {"caseId": "BENCH-1", "reason": "benchmark"},
    "recordTypes": ["population.resident"],
}


def _rate(core: str, url: str, body: Path, headers: list[str], *, h1: bool) -> float:
    shape = ["--h1", "-c", str(IN_FLIGHT), "-m", "1"] if h1 else ["-c", "16", "-m", "4"]
    arguments = ["taskset", "-c", core, "h2load", "-t", "1", *shape, "-D", str(SECONDS)]
    arguments += ["--warm-up-time", "1", "-d", str(body)]
    for header in headers:
        arguments += ["-H", header]
    answer = subprocess.run(
        [*arguments, url], capture_output=True, text=True, check=True
    )  # fmt: skip
    ok = re.search(r"status codes: (\d+) 2xx", answer.stdout)
    assert ok, answer.stdout
    if int(ok.group(1)) == 0:
        print(answer.stdout[-800:])
    return int(ok.group(1)) / SECONDS


def _wait_for_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> list[Ratio]:
    configure_logging("ERROR")
    if shutil.which("h2load") is None or shutil.which("taskset") is None:
        print("HTTP vs gRPC comparison skipped: needs h2load (nghttp2-client) and taskset")
        return []
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = str(cores[0]), str(cores[-1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grpc_body = folder / "lookup.grpc"
        message = H2LOAD_LOOKUP.SerializeToString()
        grpc_body.write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
        http_body = folder / "lookup.json"
        http_body.write_text(json.dumps(HTTP_BODY, ensure_ascii=False), encoding="utf-8")
        grpc_port, http_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "TONGBAN_DATA_DIR": str(folder / "hub"),
            "TONGBAN_HTTP__LISTEN": f"127.0.0.1:{http_port}",
            "TONGBAN_LOGGING__LEVEL": "ERROR",
        }
        hub = subprocess.Popen(
            ["taskset", "-c", server_core, TONGBAN, "serve", "--config", str(EXAMPLE),
             "--listen", f"127.0.0.1:{grpc_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rounds: list[tuple[float, float]] = []
        try:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=120)
                channel.unary_unary(GRPC_PATH)(message, timeout=30)
            base = f"http://127.0.0.1:{http_port}/api/v1"
            _wait_for_http(f"{base}/openapi.json", 60)
            for _ in range(ROUNDS):
                grpc_rate = _rate(
                    client_core,
                    f"http://127.0.0.1:{grpc_port}{GRPC_PATH}",
                    grpc_body,
                    ["content-type: application/grpc", "te: trailers"],
                    h1=False,
                )
                http_rate = _rate(
                    client_core,
                    f"{base}/lookup",
                    http_body,
                    ["content-type: application/json"],
                    h1=True,
                )
                rounds.append((http_rate, grpc_rate))
                print(
                    f"round: HTTP/JSON Lookup {http_rate:,.0f}/s, gRPC Lookup "
                    f"{grpc_rate:,.0f}/s (ratio {http_rate / grpc_rate:.2f})"
                )
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(timeout=60)
    http_rate, grpc_rate = sorted(rounds, key=lambda r: r[0] / r[1])[len(rounds) // 2]
    return [
        Ratio(
            f"http api: HTTP/JSON Lookup vs gRPC Lookup, same hub on core {server_core}, "
            f"h2load on core {client_core}, {IN_FLIGHT} in flight (median round)",
            http_rate,
            grpc_rate,
            TARGET,
            "calls/s",
        )
    ]
