"""Random and boundary messages against the real hub in secure mode (a `tongban serve`
process with mTLS): only the expected status codes, never UNKNOWN or INTERNAL, the
server stays up, and refused calls write nothing but their audit entries."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.auth.ca import CertificateAuthority
from exchange.generated import (
    adapters_pb2,
    adapters_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)

TONGBAN = str(Path(sys.executable).parent / "tongban")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
HALL = "91350100M000100Y43"
PSB = "11320100MB0000000J"
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
    admin = ca.issue_client(PSB, "registrar", folder / "ca", roles=("auditor",))
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

[[policies]]
caller = "{PSB}/registrar"
rpcs = ["AdapterRegistry/*", "AuditService/*", "CertificateService/*"]

[[registration.departments]]
uscc = "{PSB}"
egress = ["127.0.0.1:9"]
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
    admin_channel = grpc.secure_channel(
        f"localhost:{port}",
        grpc.ssl_channel_credentials(
            root_certificates=(folder / "ca" / "ca.crt").read_bytes(),
            private_key=admin.private_key.read_bytes(),
            certificate_chain=admin.certificate.read_bytes(),
        ),
    )
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
    yield channel, database, admin_channel
    channel.close()
    admin_channel.close()
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
    channel, _, _ = secure_process
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
    "/tongban.v1.AuditService/GetConsistencyProof",
    "/tongban.v1.AuditService/GetInclusionProof",
    "/tongban.v1.VerificationService/VerifyReceipt",
    "/tongban.v1.SyncService/Start",
    "/tongban.v1.AccessService/Apply",
    "/tongban.v1.CatalogService/Get",
]))  # fmt: skip
def test_random_bytes_to_every_service_get_only_expected_codes(secure_process, raw, method):
    channel, _, _ = secure_process
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    assert code_of(lambda: call(raw, timeout=5)) in ALLOWED


def test_refused_calls_write_only_audit_entries_and_the_server_stays_up(secure_process):
    channel, database, _ = secure_process
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


# --- hostile values (issue 17): each once reached a store, a formatter or datetime ----

hostile_texts = st.sampled_from(
    ["x\x00y", "\x1b[2J", "a\r\nb", "\x7f", "\x85", "\x08", "ok", "11010519491231002X"]
) | st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=12)
hostile_numbers = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -0.0, float(2**53 + 1), 1.0]
)
hostile_seconds = st.sampled_from(
    [10**15, -(10**15), 253_402_300_800, -62_135_596_801, 315_576_000_001, 10**11, 0, 1]
) | st.integers(-(2**63), 2**63 - 1)
hostile_nanos = st.sampled_from([-1, 0, 999_999_999, 1_000_000_000]) | st.integers(
    -(2**31), 2**31 - 1
)
hostile_tokens = st.sampled_from(
    ["9" * 30, "-1", "1e3", "", "0", str(2**63), str(2**63 - 1), "\x00", " 1"]
) | st.text(max_size=25)
hostile_templates = st.sampled_from(
    [
        "/r/{key:>100000000}",
        "/r/{key!r}",
        "/r/{key.__class__}",
        "/r/{key[0]}",
        "/r/{0}",
        "/r/{}",
        "/r/{key",
        "/r/{key}",
        "/r/{key_kind:^99999}/{key}",
    ]
)
NO_UNAVAILABLE = ALLOWED - {grpc.StatusCode.DEADLINE_EXCEEDED}


def _struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case_id=hostile_texts,
    reason=hostile_texts,
    key=hostile_texts,
    seconds=hostile_seconds,
    nanos=hostile_nanos,
)
def test_hostile_lookups_are_refused_as_bad_input(
    secure_process, case_id, reason, key, seconds, nanos
):
    channel, _, _ = secure_process
    request = exchange_pb2.LookupRequest(
        subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=key),
        purpose=common_pb2.Purpose(case_id=case_id, reason=reason),
        max_staleness=duration_pb2.Duration(seconds=seconds, nanos=nanos),
    )
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    assert code_of(lambda: stub.Lookup(request, timeout=5)) in NO_UNAVAILABLE


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=hostile_templates,
    number=hostile_numbers,
    header=hostile_texts,
    adapter_id=hostile_texts,
)
def test_hostile_registrations_are_refused_as_bad_input(
    secure_process, path, number, header, adapter_id
):
    _, _, admin = secure_process
    registry = adapters_pb2_grpc.AdapterRegistryStub(admin)
    spec = adapters_pb2.AdapterSpec(
        adapter_id="fuzz.http",
        department="县公安局",
        department_uscc=PSB,
        kind=adapters_pb2.ADAPTER_KIND_HTTP,
        serves=[
            adapters_pb2.RecordTypeBinding(
                record_type="population.resident", key_kinds=[common_pb2.KEY_KIND_ID_CARD]
            )
        ],
        settings=_struct(
            {
                "base_url": "http://127.0.0.1:9",
                "fetch": {"path": path},
                "headers": {"X-Fuzz": header},
                "timeout_hint": number,
                "mappings": [
                    {
                        "record_type": "population.resident",
                        "key_kind": "ID_CARD",
                        "key_field": "id",
                        "id_field": "id",
                        "field_map": {"name": "n"},
                    }
                ],
            }
        ),
    )
    code = code_of(lambda: registry.Register(adapters_pb2.RegisterRequest(spec=spec), timeout=5))
    assert code in NO_UNAVAILABLE
    if path != "/r/{key}" or not math.isfinite(number):
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    for call in (
        lambda: registry.Deregister(
            adapters_pb2.DeregisterRequest(adapter_id=adapter_id), timeout=5
        ),
        lambda: registry.Heartbeat(adapters_pb2.HeartbeatRequest(adapter_id=adapter_id), timeout=5),
    ):
        assert code_of(call) in NO_UNAVAILABLE


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seconds=hostile_seconds, nanos=hostile_nanos, token=hostile_tokens, number=hostile_numbers)
def test_hostile_audit_and_issue_requests_are_refused_as_bad_input(
    secure_process, seconds, nanos, token, number
):
    _, _, admin = secure_process
    auditor = audit_pb2_grpc.AuditServiceStub(admin)
    request = audit_pb2.ListAccessRequest(
        subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X"),
        since=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        page_token=token,
    )
    assert code_of(lambda: auditor.ListAccess(request, timeout=5)) in NO_UNAVAILABLE
    issue = certificates_pb2.IssueRequest(
        request_id="fuzz-1",
        type_code="BL",
        holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43"),
        issuer_uscc=PSB,
        fields=_struct({"capital": number}),
    )
    certificates = certificates_pb2_grpc.CertificateServiceStub(admin)
    code = code_of(lambda: certificates.Issue(issue, timeout=5))
    assert code in NO_UNAVAILABLE
    if not math.isfinite(number):
        assert code == grpc.StatusCode.INVALID_ARGUMENT
