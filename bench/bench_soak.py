"""Soak: 50 concurrent mTLS clients send 100,000 lookups to one hub process.

The hub runs as a process of its own (production mode: mTLS with certificates from a
test CA, a caller policy, the audit trail, sealed cached records; embedded SQLite), so
its resident memory is its own. Reported: errors (target 0), latency p50/p99, and the
hub's RSS over the run: the mean of the samples taken during the last 10% of the
lookups against the mean during the first 10% (target: grows less than 10%).

`make bench` runs it with every other benchmark; alone: ``python -m bench bench_soak``.
Not part of CI: it takes minutes. ``TONGBAN_SOAK_LOOKUPS`` shortens it for a try-out.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench.harness import Ratio, status_kib
from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc

CLIENTS = 50
LOOKUPS = int(os.environ.get("TONGBAN_SOAK_LOOKUPS", "100000"))
HALL = "91350100M000100Y43"
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="SOAK-1", reason="企业开办 soak")
EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "tongban.example.toml"
ROOT = Path(__file__).resolve().parents[1]


def serve(folder: Path, cert: Path, key: Path) -> None:
    """The hub process: production settings on the CA in `folder`; prints READY <port>."""
    from exchange.hub import Hub
    from exchange.logs import configure_logging
    from exchange.server import HubServer
    from exchange.settings import load_settings

    configure_logging("ERROR")
    ca = folder / "ca"
    settings = load_settings(
        EXAMPLE,
        data_dir=str(folder / "data"),
        policies=[
            {
                "caller": f"{HALL}/hall-approval",
                "rpcs": ["ExchangeService/*"],
                "record_types": {"population.resident": ["name", "birth_date"]},
                "reasons": ["^企业开办"],
            }
        ],
        **{
            "logging.level": "ERROR",
            "server.mode": "production",
            "security.tls_cert_file": str(cert),
            "security.tls_key_file": str(key),
            "security.client_ca_file": str(ca / "ca.crt"),
            "security.audit_subject_key": "soak-audit-key",
            "security.record_keys": {"k1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
            "security.active_record_key": "k1",
        },
    )

    async def run() -> None:
        server = HubServer(Hub.open(settings), "127.0.0.1:0", None)
        await server.start()
        print(f"READY {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _rss_kib(pid: int) -> int:
    return status_kib("VmRSS", pid) or 0


async def _soak(port: int, pid: int, ca: Path, client: tuple[Path, Path]) -> list[Ratio]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(ca / "ca.crt").read_bytes(),
        private_key=client[1].read_bytes(),
        certificate_chain=client[0].read_bytes(),
    )
    request = exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss: list[tuple[int, int]] = []  # (lookups done, KiB)
    done = 0
    sample_every = max(1, LOOKUPS // 200)
    per_client = LOOKUPS // CLIENTS

    async def one_client() -> None:
        nonlocal done
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
            for _ in range(per_client):
                started = time.perf_counter()
                try:
                    answer = await stub.Lookup(request, timeout=10)
                    if answer.partial or not answer.records:
                        errors["partial or empty"] = errors.get("partial or empty", 0) + 1
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                latencies.append(time.perf_counter() - started)
                done += 1
                if done % sample_every == 0:
                    rss.append((done, _rss_kib(pid)))

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    seconds = time.perf_counter() - began
    total = per_client * CLIENTS
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    first = [kib for n, kib in rss if n <= total * 0.1]
    last = [kib for n, kib in rss if n > total * 0.9]
    first_mib = statistics.fmean(first) / 1024
    last_mib = statistics.fmean(last) / 1024
    error_count = sum(errors.values())
    print(
        f"{total:,} lookups by {CLIENTS} mTLS clients in {seconds:.0f} s "
        f"({total / seconds:,.0f}/s): errors {error_count} {errors or ''}; "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; hub RSS {first_mib:.1f} MiB (first 10%) -> "
        f"{last_mib:.1f} MiB (last 10%), {100 * (last_mib / first_mib - 1):+.1f}%"
    )
    return [
        Ratio("soak: lookups answered in full vs sent", total - error_count, total, 1.0, "calls"),
        Ratio(
            "soak: hub RSS, last 10% vs first 10% of the lookups",
            last_mib,
            first_mib,
            1.10,
            "MiB",
            higher_is_better=False,
        ),
    ]


def main() -> list[Ratio]:
    from exchange.auth.ca import CertificateAuthority

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = CertificateAuthority.init(folder / "ca")
        server = ca.issue_server("hub", ["127.0.0.1", "localhost"], folder / "ca")
        hall = ca.issue_client(HALL, "hall-approval", folder / "ca")
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_soak",
                "serve",
                str(folder),
                str(server.certificate),
                str(server.private_key),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert hub.stdout is not None
            line = hub.stdout.readline()
            if not line.startswith("READY "):
                raise RuntimeError(f"the soak hub did not start: {line!r}")
            port = int(line.split()[1])
            return asyncio.run(
                _soak(port, hub.pid, folder / "ca", (hall.certificate, hall.private_key))
            )
        finally:
            hub.terminate()
            hub.wait(timeout=30)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(*(Path(argument) for argument in sys.argv[2:5]))
