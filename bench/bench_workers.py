"""All cores: `tongban serve --workers 2` against `--workers 1`, both driven by h2load.

Each round starts a `tongban serve` process with the example configuration (its
in-process demo adapters) on a fresh store, with one worker and then with two on one
port (SO_REUSEPORT), and drives it with h2load (Debian's nghttp2-client, a C load
generator: a Python client would cap the rate first) for a fixed time: Lookup (one
source, one record, audit on) and health Check (gRPC machinery alone). The ratio is
two workers' rate over one worker's, in the same round; the median round counts.

On a 2-core machine the load generator shares the cores with the hub, so no pinning
is possible here; h2load runs one thread. The store is SQLite unless
``TONGBAN_TEST_DATABASE_URL`` names a PostgreSQL server (then a fresh schema there):
the hub's writes (audit, records) from two processes meet at the store.

Each figure also says how many cores the hub and h2load kept busy: one worker already
uses more than one core (gRPC's own threads, the audit and record-writer threads), so
on 2 shared cores the headroom for a second worker is what is left of the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.bench_sync import PostgresSchemas
from bench.harness import Ratio
from exchange.generated import common_pb2, exchange_pb2

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "tongban.example.toml"
TONGBAN = str(Path(sys.executable).parent / "tongban")
SECONDS = int(os.environ.get("TONGBAN_BENCH_SECONDS", "6"))
ROUNDS = 3
CLIENTS = 16
STREAMS = 4
LOOKUP = exchange_pb2.LookupRequest(
    subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X"),
    purpose=common_pb2.Purpose(case_id="BENCH-WORKERS", reason="benchmark"),
    record_types=["population.resident"],
)
CALLS = {
    "Lookup": ("/tongban.v1.ExchangeService/Lookup", LOOKUP.SerializeToString()),
    "health Check": ("/grpc.health.v1.Health/Check", b""),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed), as h2load sends it as the body."""
    return b"\x00" + struct.pack(">I", len(message)) + message


class _Serve:
    """A `tongban serve --workers N` process on a fresh store."""

    def __init__(self, folder: Path, workers: int, database_url: str | None) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "TONGBAN_DATA_DIR": str(folder),
            "TONGBAN_HTTP__LISTEN": "",
            "TONGBAN_LOGGING__LEVEL": "ERROR",
        }
        if database_url:
            env["TONGBAN_DATABASE__URL"] = database_url
        self.log = folder / "serve.log"
        folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [TONGBAN, "serve", "--config", str(EXAMPLE), "--listen",
                 f"127.0.0.1:{self.port}", "--workers", str(workers)],
                stdout=output,
                stderr=output,
                env=env,
            )  # fmt: skip
        self._wait_serving(workers)

    def _wait_serving(self, workers: int) -> None:
        deadline = time.monotonic() + 120
        answered = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tongban serve ended: {self.log.read_text()[-2000:]}")
            # Fresh connections land on every worker in time: wait for several answers.
            with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                try:
                    health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    answered += 1
                except grpc.RpcError:
                    time.sleep(0.2)
            if answered >= 4 * workers:
                return
        raise RuntimeError("tongban serve did not start serving")

    def cpu_seconds(self) -> float:
        """CPU time the hub has used so far: the serving process and its workers."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            pids += [int(pid) for pid in children.read_text().split()]
        ticks = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                # utime and stime: fields 14 and 15, counted after the parenthesized name.
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=90)


def _h2load(serve: _Serve, path: str, body: Path) -> tuple[float, float, float]:
    """Successful calls per second over SECONDS (after a 1 s warm-up), and the cores the
    hub and h2load kept busy meanwhile (CPU seconds over wall seconds)."""
    hub_before, load_before = serve.cpu_seconds(), _children_cpu_seconds()
    started = time.monotonic()
    answer = subprocess.run(
        ["h2load", "-t", "1", "-c", str(CLIENTS), "-m", str(STREAMS), "-D", str(SECONDS),
         "--warm-up-time", "1", "-d", str(body), "-H", "content-type: application/grpc",
         "-H", "te: trailers", f"http://127.0.0.1:{serve.port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    hub_cores = (serve.cpu_seconds() - hub_before) / wall
    load_cores = (_children_cpu_seconds() - load_before) / wall
    done = re.search(r"requests: .* (\d+) succeeded", answer.stdout)
    assert done, answer.stdout
    return int(done.group(1)) / SECONDS, hub_cores, load_cores


def _children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (the h2load runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> list[Ratio]:
    if shutil.which("h2load") is None:
        print("skipped: h2load not found (apt-get install nghttp2-client)")
        return []
    pg_url = os.environ.get("TONGBAN_TEST_DATABASE_URL")
    schemas = PostgresSchemas(pg_url) if pg_url else None
    store = "PostgreSQL" if schemas else "SQLite"
    print(
        f"load generator: h2load -t 1 -c {CLIENTS} -m {STREAMS}, {SECONDS} s per figure; "
        f"store {store}; {os.cpu_count()} cores shared by hub and h2load (no pinning)"
    )
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in CALLS}
    try:
        with tempfile.TemporaryDirectory(prefix="tongban-bench-workers-") as temporary:
            folder = Path(temporary)
            bodies = {}
            for name, (_, message) in CALLS.items():
                bodies[name] = folder / f"{name.replace(' ', '-')}.body"
                bodies[name].write_bytes(_grpc_frame(message))
            for number in range(ROUNDS):
                rates: dict[int, dict[str, tuple[float, float, float]]] = {}
                for workers in (1, 2):
                    url = schemas.fresh() if schemas else None
                    serve = _Serve(folder / f"round-{number}-w{workers}", workers, url)
                    try:
                        rates[workers] = {
                            name: _h2load(serve, path, bodies[name])
                            for name, (path, _) in CALLS.items()
                        }
                    finally:
                        serve.stop()
                for name in CALLS:
                    (one, one_hub, one_load), (two, two_hub, two_load) = (
                        rates[1][name],
                        rates[2][name],
                    )
                    rounds[name].append((two, one))
                    print(
                        f"round {number + 1}: {name}: 1 worker {one:,.0f}/s, 2 workers "
                        f"{two:,.0f}/s ({two / one:.2f}x); cores busy: hub {one_hub:.2f} vs "
                        f"{two_hub:.2f}, h2load {one_load:.2f} vs {two_load:.2f}"
                    )
    finally:
        if schemas:
            schemas.drop()
    ratios = []
    for name, measured in rounds.items():
        two, one = sorted(measured, key=lambda pair: pair[0] / pair[1])[len(measured) // 2]
        ratios.append(
            Ratio(
                f"workers: {name} with 2 workers vs 1 (h2load, {store}, median round)",
                two,
                one,
                1.7,
                "calls/s",
            )
        )
    return ratios


if __name__ == "__main__":
    from bench.harness import report

    raise SystemExit(report(main()))
