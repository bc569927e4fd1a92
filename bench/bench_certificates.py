"""E-certificate benchmarks on a real hub: verification over gRPC, and issuance rates.

- `VerifyStream` over gRPC against raw Ed25519 verify (target >= 0.50). A `tongban
  serve` process on a temporary SQLite store issues 256 business licences; this process
  then streams them back for verification over one VerifyStream call (writer and reader
  running concurrently, as a bulk verifier would) while the hub verifies them. The
  baseline is `Ed25519PublicKey.verify` on the same tokens' signing inputs, here.
- The in-process `Verifier`, built from the bundle and status list the hub published,
  on the same hub-issued tokens (target >= 0.90; `bench_verify` measures it on its own).
- Issue + sign + store on SQLite, in process: one certificate per transaction, and 100
  per transaction (`CertificateLifecycle.issue_many`), with their audit entries.
  Reported against the raw Ed25519 sign rate and against each other.

The machine is shared and noisy: rounds alternate and the best of each side is kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.bench_verify import compare_in_process, raw_inputs
from bench.harness import Ratio, rate
from certstore import migrate
from certstore.audit import AuditLog
from certstore.database import Database
from domain.subjects import KeyKind, parse_key
from exchange.audit import AuditTrail
from exchange.auth.policy import Caller
from exchange.certificates.library import CertificateLibrary
from exchange.certificates.lifecycle import IssueRequest
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    verification_pb2,
    verification_pb2_grpc,
)
from exchange.logs import configure_logging
from exchange.settings import load_settings
from signing import TYP_CERTIFICATE, StatusList, TrustBundle, Verifier, parse_compact
from signing.base64url import b64url_decode

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "tongban.example.toml"
TONGBAN = str(Path(sys.executable).parent / "tongban")
LICENCE = "11100000000013338W001"
HOLDER = "91350100M000100Y43"
TOKENS = 256
ROUNDS = 3
STREAM_SECONDS = 2.0
SINGLE_ISSUES = 300
BATCH_SIZE = 100
BATCHES = 5
ANONYMOUS = Caller(organization="", system="bench", anonymous_dev=True)


def _fields(serial: int) -> dict[str, object]:
    return {
        "name": f"南京通办科技有限公司第{serial}分公司",
        "legal_representative": "张三",
        "registered_capital_cny": 1_000_000 + serial,
        "established": "2019-05-20",
        "address": "江苏省南京市玄武区中山路1号",
        "business_scope": "软件开发；信息技术咨询服务；数据处理和存储支持服务",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Hub:
    """A `tongban serve` process on a temporary SQLite store."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        env = dict(os.environ)
        env.update(
            {
                "TONGBAN_DATA_DIR": str(folder),
                "TONGBAN_DATABASE__URL": f"sqlite:///{folder / 'tongban.db'}",
                "TONGBAN_HTTP__LISTEN": "",
                "TONGBAN_LOGGING__LEVEL": "ERROR",
            }
        )
        command = [TONGBAN, "serve", "--config", str(EXAMPLE), "--listen", self.address]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the hub did not start") from None
                    time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _issue_tokens(hub: _Hub) -> tuple[list[str], float]:
    """256 tokens issued over gRPC, and the unary Issue rate (one call at a time)."""
    with grpc.insecure_channel(hub.address) as channel:
        stub = certificates_pb2_grpc.CertificateServiceStub(channel)
        holder = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=HOLDER)
        tokens = []
        started = time.perf_counter()
        for serial in range(TOKENS):
            fields = struct_pb2.Struct()
            fields.update(_fields(serial))
            answer = stub.Issue(
                certificates_pb2.IssueRequest(
                    request_id=uuid.uuid4().hex, type_code=LICENCE, holder=holder, fields=fields
                )
            )
            tokens.append(answer.certificate.token)
        return tokens, TOKENS / (time.perf_counter() - started)


def _published(hub: _Hub) -> tuple[Verifier, dict[str, object]]:
    with grpc.insecure_channel(hub.address) as channel:
        answer = verification_pb2_grpc.VerificationServiceStub(channel).GetTrustBundle(
            verification_pb2.GetTrustBundleRequest()
        )
    root = json.loads(answer.root_public_jwk)
    now = datetime.now(UTC)
    bundle = TrustBundle.load(answer.trust_bundle, root, now)
    status_list = StatusList.load(answer.status_list, root, now)
    return Verifier.from_bundle(bundle, status_list), bundle.to_jwks()


def _raw_key(tokens: list[str], jwks: dict[str, object]) -> Ed25519PublicKey:
    kid = parse_compact(tokens[0], typ=TYP_CERTIFICATE).kid
    keys = jwks["keys"]
    assert isinstance(keys, list)
    x = next(key["x"] for key in keys if key["kid"] == kid)
    return Ed25519PublicKey.from_public_bytes(b64url_decode(x))


async def _stream_rate(address: str, tokens: list[str], count: int) -> float:
    """Verdicts per second over one VerifyStream of `count` requests."""
    requests = [
        verification_pb2.VerifyStreamRequest(correlation_id=str(n), token=tokens[n % len(tokens)])
        for n in range(count)
    ]
    async with grpc.aio.insecure_channel(address) as channel:
        call = verification_pb2_grpc.VerificationServiceStub(channel).VerifyStream()

        async def send() -> None:
            for request in requests:
                await call.write(request)
            await call.done_writing()

        started = time.perf_counter()
        sender = asyncio.create_task(send())
        valid = 0
        async for answer in call:
            valid += answer.verdict.valid
        await sender
        elapsed = time.perf_counter() - started
    assert valid == count, f"only {valid} of {count} verdicts were valid"
    return count / elapsed


class _StreamEcho:
    """`bench.echo_server` answering every VerifyStream message with one of the hub's
    answers: the same messages both ways over the same client, and no hub logic."""

    def __init__(self, folder: Path, hub: _Hub, token: str) -> None:
        with grpc.insecure_channel(hub.address) as channel:
            [answer] = verification_pb2_grpc.VerificationServiceStub(channel).VerifyStream(
                iter([verification_pb2.VerifyStreamRequest(correlation_id="0", token=token)])
            )
        lookup, stream = folder / "lookup.answer", folder / "stream.answer"
        folder.mkdir(parents=True, exist_ok=True)
        lookup.write_bytes(b"")
        stream.write_bytes(answer.SerializeToString())
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server", str(lookup), str(port), str(stream)],
            cwd=ROOT,
        )  # fmt: skip
        with grpc.insecure_channel(self.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _verify_stream(
    folder: Path, hub: _Hub, tokens: list[str], raw_key: Ed25519PublicKey
) -> list[Ratio]:
    next_input = itertools.cycle(raw_inputs(tokens)).__next__

    def raw() -> None:
        signature, data = next_input()
        raw_key.verify(signature, data)

    baseline = max(rate(raw, seconds=0.5) for _ in range(2))
    count = int(baseline * STREAM_SECONDS * 0.5)
    echo = _StreamEcho(folder, hub, tokens[0])
    try:
        asyncio.run(_stream_rate(hub.address, tokens, 500))  # warm-up
        asyncio.run(_stream_rate(echo.address, tokens, 500))
        measured = echoed = 0.0
        for _ in range(ROUNDS):
            baseline = max(baseline, rate(raw, seconds=0.5))
            measured = max(measured, asyncio.run(_stream_rate(hub.address, tokens, count)))
            echoed = max(echoed, asyncio.run(_stream_rate(echo.address, tokens, count)))
    finally:
        echo.stop()
    print(f"raw Ed25519PublicKey.verify:  {baseline:,.0f}/s")
    print(f"VerifyStream over gRPC:       {measured:,.0f}/s ({count} tokens per stream)")
    print(f"bare grpc.aio stream echo:    {echoed:,.0f}/s (same messages, same client)")
    return [
        Ratio(
            name="verify: VerifyStream over gRPC vs raw Ed25519",
            measured=measured,
            baseline=baseline,
            target=0.50,
            unit="verifies/s",
        ),
        Ratio(
            name="verify: bare grpc.aio stream echo vs raw Ed25519 (report: the transport's "
            "own ceiling on this machine)",
            measured=echoed,
            baseline=baseline,
            target=0.0,
            unit="messages/s",
        ),
        Ratio(
            name="verify: VerifyStream vs bare grpc.aio stream echo of its messages (report)",
            measured=measured,
            baseline=echoed,
            target=0.0,
            unit="messages/s",
        ),
    ]


def _issue_rates(folder: Path) -> list[Ratio]:
    """Issue + sign + store rates on SQLite, in process, single and batched."""
    url = f"sqlite:///{folder / 'issue.db'}"
    settings = load_settings(
        EXAMPLE, data_dir=str(folder), **{"database.url": url, "http.listen": ""}
    )
    migrate.upgrade(url)
    database = Database.from_url(url)
    library = CertificateLibrary.open(
        settings, database, AuditTrail(AuditLog(database), b"bench-audit-key")
    )
    holder = parse_key(KeyKind.USCC, HOLDER)
    serials = itertools.count()

    def request() -> IssueRequest:
        serial = next(serials)
        return IssueRequest(
            request_id=f"bench-{serial}", type_code=LICENCE, holder=holder, fields=_fields(serial)
        )

    lifecycle = library.lifecycle
    lifecycle.issue(request(), ANONYMOUS)  # warm-up
    started = time.perf_counter()
    for _ in range(SINGLE_ISSUES):
        lifecycle.issue(request(), ANONYMOUS)
    single = SINGLE_ISSUES / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(BATCHES):
        lifecycle.issue_many([request() for _ in range(BATCH_SIZE)], ANONYMOUS)
    batched = BATCHES * BATCH_SIZE / (time.perf_counter() - started)
    database.dispose()

    private = Ed25519PrivateKey.generate()
    payload = b"x" * 1000
    sign = max(rate(lambda: private.sign(payload), seconds=0.5) for _ in range(2))
    print(f"raw Ed25519 sign:                        {sign:,.0f}/s")
    print(f"issue+sign+store, one per transaction:   {single:,.0f}/s (SQLite)")
    print(f"issue+sign+store, {BATCH_SIZE} per transaction:   {batched:,.0f}/s (SQLite)")
    return [
        Ratio(
            name="issue+sign+store on SQLite, one per transaction, vs raw Ed25519 sign (report)",
            measured=single,
            baseline=sign,
            target=0.0,
            unit="certificates/s",
        ),
        Ratio(
            name=f"issue+sign+store on SQLite: {BATCH_SIZE} per transaction vs one per transaction",
            measured=batched,
            baseline=single,
            target=1.0,
            unit="certificates/s",
        ),
    ]


def main() -> list[Ratio]:
    configure_logging("ERROR", "console")
    with tempfile.TemporaryDirectory(prefix="tongban-bench-") as temporary:
        folder = Path(temporary)
        hub = _Hub(folder / "hub")
        try:
            tokens, issue_rate = _issue_tokens(hub)
            print(f"Issue over gRPC, one call at a time: {issue_rate:,.0f}/s (SQLite)")
            verifier, jwks = _published(hub)
            raw_key = _raw_key(tokens, jwks)
            ratios = [
                *_verify_stream(folder / "echo", hub, tokens, raw_key),
                compare_in_process(
                    verifier,
                    tokens,
                    raw_key,
                    name="verify: in-process Verifier on hub-issued tokens vs raw Ed25519",
                ),
            ]
        finally:
            hub.stop()
        ratios.extend(_issue_rates(folder / "issue"))
    return ratios
