"""Random and boundary messages against the real hub in secure mode (a `tongban serve`
process with mTLS): only the expected status codes, never UNKNOWN or INTERNAL, the
server stays up, and refused calls write nothing but their audit entries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.auth.ca import CertificateAuthority
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)

TONGBAN = str(Path(sys.executable).parent / "tongban")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
HALL = "91350100M000100Y43"
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def secure_process(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    ca = CertificateAuthority.init(folder / "ca")
    server = ca.issue_server("hub", ["localhost", "127.0.0.1"], folder / "ca")
    client = ca.issue_client(HALL, "hall-approval", folder / "ca")
    port = free_port()
    database = folder / "hub.db"
    config = folder / "secure.toml"
    config.write_text(
        EXAMPLE.read_text(encoding="utf-8")
        + f"""
[[policies]]
caller = "{HALL}/hall-approval"
rpcs = ["ExchangeService/*", "AdapterRegistry/List"]
record_types = {{ "population.resident" = ["name"] }}
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "TONGBAN_SERVER__MODE": "production",
        "TONGBAN_SERVER__LISTEN": f"127.0.0.1:{port}",
        "TONGBAN_DATABASE__URL": f"sqlite:///{database}",
        "TONGBAN_DATA_DIR": str(folder / "data"),
        "TONGBAN_SECURITY__TLS_CERT_FILE": str(server.certificate),
        "TONGBAN_SECURITY__TLS_KEY_FILE": str(server.private_key),
        "TONGBAN_SECURITY__CLIENT_CA_FILE": str(folder / "ca" / "ca.crt"),
        "TONGBAN_SECURITY__AUDIT_SUBJECT_KEY": "fuzz-audit-key",
        "TONGBAN_SECURITY__ENCRYPT_RECORDS": "false",
        "TONGBAN_SIGNING__PASSPHRASE_ENV": "FUZZ_SIGNING_PASSPHRASE",
        "FUZZ_SIGNING_PASSPHRASE": "a passphrase only this test knows",
        "TONGBAN_SIGNING__GENERATE_MISSING_KEYS": "true",
        "TONGBAN_LOGGING__LEVEL": "ERROR",
        "TONGBAN_HTTP__LISTEN": "",
    }
    process = subprocess.Popen(
        [TONGBAN, "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(folder / "ca" / "ca.crt").read_bytes(),
        private_key=client.private_key.read_bytes(),
        certificate_chain=client.certificate.read_bytes(),
    )
    channel = grpc.secure_channel(f"localhost:{port}", credentials)
    deadline = time.monotonic() + 30
    while True:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            break
        except grpc.RpcError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.communicate()[1]) from None
            time.sleep(0.2)
    yield channel, database
    channel.close()
    process.terminate()
    process.wait(timeout=30)


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


kinds = st.integers(-5, 12)
texts = st.text(max_size=40) | st.sampled_from(["", " ", "11010519491231002X", "9" * 300, "\x00"])
subjects = st.builds(common_pb2.SubjectKey, kind=kinds, value=texts)
purposes = st.builds(common_pb2.Purpose, case_id=texts, reason=texts)
record_types = st.lists(
    st.sampled_from(["population.resident", "market.business_license", "x", ""]) | texts,
    max_size=3,
)
lookups = st.builds(
    exchange_pb2.LookupRequest,
    subject=subjects,
    record_types=record_types,
    purpose=purposes,
)


def rows(database: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=lookups)
def test_random_lookups_get_only_expected_codes(secure_process, request):
    channel, _ = secure_process
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    assert code_of(lambda: stub.Lookup(request, timeout=5)) in ALLOWED


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200), method=st.sampled_from([
    "/tongban.v1.ExchangeService/Lookup",
    "/tongban.v1.AdapterRegistry/Register",
    "/tongban.v1.CertificateService/Issue",
    "/tongban.v1.VerificationService/Verify",
    "/tongban.v1.AuditService/ListAccess",
    "/tongban.v1.SyncService/Start",
    "/tongban.v1.AccessService/Apply",
    "/tongban.v1.CatalogService/Get",
]))  # fmt: skip
def test_random_bytes_to_every_service_get_only_expected_codes(secure_process, raw, method):
    channel, _ = secure_process
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    assert code_of(lambda: call(raw, timeout=5)) in ALLOWED


def test_refused_calls_write_only_audit_entries_and_the_server_stays_up(secure_process):
    channel, database = secure_process
    records_before, audit_before = rows(database, "records"), rows(database, "audit_log")
    refused = [
        lambda: adapters_pb2_grpc.AdapterRegistryStub(channel).Register(
            adapters_pb2.RegisterRequest(), timeout=5
        ),
        lambda: audit_pb2_grpc.AuditServiceStub(channel).VerifyChain(
            audit_pb2.VerifyChainRequest(), timeout=5
        ),
        lambda: exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
            exchange_pb2.LookupRequest(
                subject=common_pb2.SubjectKey(
                    kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X"
                ),
                record_types=["market.business_license"],
                purpose=common_pb2.Purpose(case_id="C", reason="r"),
            ),
            timeout=5,
        ),
    ]
    codes = [code_of(call) for call in refused]
    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 3
    assert rows(database, "records") == records_before
    assert rows(database, "audit_log") == audit_before + 3
    verify = verification_pb2_grpc.VerificationServiceStub(channel)
    assert code_of(lambda: verify.Verify(verification_pb2.VerifyRequest(), timeout=5)) in ALLOWED
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
