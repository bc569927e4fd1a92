"""A `tongban serve` process killed with SIGKILL during a burst of issues loses nothing.

After the restart, every certificate the hub acknowledged is there with the same token,
every stored certificate verifies offline with the published trust bundle, and
re-sending every request of the burst (the retries a hall platform would make) creates
no duplicate: acknowledged requests come back as replays, and afterwards there is
exactly one certificate per request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cert_testkit import EXAMPLE, licence_issue
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certstore.audit import AuditLog
from certstore.certificates import CertificateStore
from certstore.database import Database
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from signing import StatusList, TrustBundle, Verifier

TONGBAN = str(Path(sys.executable).parent / "tongban")
WORKERS = 8
ACKNOWLEDGED_BEFORE_KILL = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServeProcess:
    """`tongban serve` on a free port, with the test's database and data folder."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [TONGBAN, "serve", "--config", str(EXAMPLE), "--listen", f"127.0.0.1:{self.port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    problem = f"hub did not start: {self.process.communicate()}"
                    raise AssertionError(problem) from None
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.channel.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.communicate(timeout=30)
        self.channel.close()


@pytest.fixture
def serve_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TONGBAN_DATABASE__URL": database_url,
            "TONGBAN_DATA_DIR": str(tmp_path / "data"),
            "TONGBAN_HTTP__LISTEN": "",
            "TONGBAN_LOGGING__LEVEL": "WARNING",
        }
    )
    return env


def test_sigkill_during_a_burst_of_issues_loses_and_duplicates_nothing(
    serve_env: dict[str, str], database_url: str
) -> None:
    hub = ServeProcess(serve_env)
    stub = certificates_pb2_grpc.CertificateServiceStub(hub.channel)
    acknowledged: dict[str, str] = {}  # request id -> certificate id
    tokens: dict[str, str] = {}
    sent: dict[str, certificates_pb2.IssueRequest] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def issue_until_the_hub_dies(worker: int) -> None:
        for number in range(10_000):
            request = licence_issue(request_id=f"burst-{worker}-{number}")
            with lock:
                sent[request.request_id] = request
            try:
                answer = stub.Issue(request, timeout=10)
            except grpc.RpcError:
                return  # the hub is gone
            with lock:
                acknowledged[request.request_id] = answer.certificate.id
                tokens[answer.certificate.id] = answer.certificate.token
                if len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                    enough.set()

    with ThreadPoolExecutor(WORKERS) as pool:
        for worker in range(WORKERS):
            pool.submit(issue_until_the_hub_dies, worker)
        assert enough.wait(60), "the burst never got going"
        hub.kill()  # mid-burst: calls are in flight on every worker

    assert len(sent) > len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    restarted = ServeProcess(serve_env)
    try:
        stub = certificates_pb2_grpc.CertificateServiceStub(restarted.channel)
        for certificate_id, token in tokens.items():
            stored = stub.Get(
                certificates_pb2.GetRequest(certificate_id=certificate_id)
            ).certificate
            assert stored.token == token

        verifier = _offline_verifier(restarted.channel)
        database = Database.from_url(database_url)
        try:
            stored_tokens = {s.id: s.token for s in CertificateStore(database).iterate()}
            for token in stored_tokens.values():
                verdict = verifier.verify(token)
                assert verdict.valid, verdict.reasons
            assert set(tokens) <= set(stored_tokens)

            for request_id, request in sent.items():
                answer = stub.Issue(request, timeout=10)
                if request_id in acknowledged:
                    assert answer.replayed
                    assert answer.certificate.id == acknowledged[request_id]
            after = list(CertificateStore(database).iterate())
            assert len(after) == len(sent)
            assert len({s.request_id for s in after}) == len(sent)
            assert AuditLog(database).verify().intact
        finally:
            database.dispose()
    finally:
        restarted.stop()


def _offline_verifier(channel: grpc.Channel) -> Verifier:
    answer = verification_pb2_grpc.VerificationServiceStub(channel).GetTrustBundle(
        verification_pb2.GetTrustBundleRequest()
    )
    root = json.loads(answer.root_public_jwk)
    now = datetime.now(UTC)
    return Verifier.from_bundle(
        TrustBundle.load(answer.trust_bundle, root, now),
        StatusList.load(answer.status_list, root, now),
    )
