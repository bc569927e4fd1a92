"""Department-signed records from an `http` department: the JWS beside each record in the
department's JSON answer is verified on arrival by the same verifier as the grpc path,
passed through to the caller, and a bad one rejects its record naming why."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.base import AdapterSpec
from adapters.factory import build_from_spec
from adapters.resilience import RetryPolicy
from certstore.sync_jobs import SyncJobRepository
from domain.subjects import KeyKind, normalize
from exchange.generated import (
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)
from signing.department import sign_record
from signing.keys import SoftwareSigningKey
from signing.trust import TrustedKey

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "adapters"
RESIDENT = "population.resident"
PSB = "11110000000013338W"
SIGNED_AT = datetime(2026, 1, 1, tzinfo=UTC)
WANG = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
FIELD_MAP = {"name": "xm", "birth_date": "csrq"}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tongban_it_{name}", ASSETS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


http_department = _load("http_department")
KEY = SoftwareSigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
OTHER = SoftwareSigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))


def signer(item: dict[str, Any]) -> str | None:
    """R1 signed right, R1b signed over other content, R3 signed by another key,
    the rest unsigned."""
    record_id = item.get("recordNo")
    fields = {name: item[source] for name, source in FIELD_MAP.items() if source in item}
    subject = f"ID_CARD:{normalize(str(item.get('idNo', '')))}"
    if record_id == "R1":
        return sign_record(KEY, RESIDENT, "R1", subject, fields, SIGNED_AT)
    if record_id == "R1b":
        return sign_record(KEY, RESIDENT, "R1b", subject, {**fields, "name": "别人"}, SIGNED_AT)
    if record_id == "R3":
        return sign_record(OTHER, RESIDENT, "R3", subject, fields, SIGNED_AT)
    return None


def http_adapter(  # type: ignore[no-untyped-def]
    base_url: str, *, keys: bool, signature_field: str | None = None, changes: bool = False
):
    mapping: dict[str, Any] = {
        "record_type": RESIDENT,
        "key_kind": "ID_CARD",
        "key_field": "idNo",
        "id_field": "recordNo",
        "field_map": FIELD_MAP,
    }
    if signature_field is not None:
        mapping["signature_field"] = signature_field
    trusted = TrustedKey(
        public_key=KEY.public_key(),
        issuer_department="市公安局",
        issuer_uscc=PSB,
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return build_from_spec(
        AdapterSpec(
            adapter_id="psb.http-signed",
            kind="http",
            department="市公安局",
            department_uscc=PSB,
            serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
            options={
                "base_url": base_url,
                "fetch": {"path": "/api/v1/residents/{key}", "params": {"kind": "{key_kind}"}},
                "records_path": "data.items",
                "auth_header": "X-Api-Token",
                "auth_token": http_department.TOKEN,
                "mappings": [mapping],
                **(
                    {
                        "changes": {
                            "path": "/api/v1/changes",
                            "page_size_param": "limit",
                            "next_cursor_path": "next",
                            "has_more_path": "more",
                        }
                    }
                    if changes
                    else {}
                ),
            },
            timeout=2.0,
            retry=RetryPolicy(attempts=1),
            failure_threshold=100,
            department_keys=(trusted,) if keys else (),
        )
    )


async def lookup(channel, subject, case: str) -> exchange_pb2.LookupResponse:  # type: ignore[no-untyped-def]
    return await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
        exchange_pb2.LookupRequest(
            subject=subject, purpose=common_pb2.Purpose(case_id=case, reason="signed")
        )
    )


async def test_an_http_department_signs_its_records(start_hub):  # type: ignore[no-untyped-def]
    department = http_department.HttpDepartment(signer=signer).start()
    try:
        server = await start_hub([http_adapter(department.base_url, keys=True)])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await lookup(channel, WANG, "H-1")
            mine = [r for r in answer.records if r.provenance.adapter_id == "psb.http-signed"]
            assert [r.provenance.source_record_id for r in mine] == ["R1"]
            [record] = mine
            signature = record.provenance.department_signature
            assert signature == signer(http_department.RESIDENTS[WANG.value][0])
            reasons = {r.source_record_id: r.reason for r in answer.rejected}
            assert "other content than the record sent" in reasons["R1b"], reasons
            verified = await verification_pb2_grpc.VerificationServiceStub(channel).VerifyReceipt(
                verification_pb2.VerifyReceiptRequest(receipt=answer.receipt, answer=answer)
            )
            assert verified.valid, verified.checks
            claims = json.loads(verified.claims_json)
            assert any("department_signature" in r for r in claims["records"])
    finally:
        department.stop()


async def test_an_http_record_signed_by_another_key_or_unsigned_is_rejected(start_hub):  # type: ignore[no-untyped-def]
    original = dict(http_department.RESIDENTS)
    other = "320106199003071234"
    http_department.RESIDENTS[other] = [
        {"recordNo": "R3", "idNo": other, "xm": "张敏", "csrq": "1990-03-07"},
        {"recordNo": "R4", "idNo": other, "xm": "张敏", "csrq": "1990-03-07"},
    ]
    department = http_department.HttpDepartment(signer=signer).start()
    try:
        server = await start_hub([http_adapter(department.base_url, keys=True)])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            subject = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=other)
            answer = await lookup(channel, subject, "H-2")
            assert not [r for r in answer.records if r.provenance.adapter_id == "psb.http-signed"]
            reasons = {r.source_record_id: r.reason for r in answer.rejected}
            assert "not a key of this department" in reasons["R3"], reasons
            assert "no department signature" in reasons["R4"], reasons
    finally:
        department.stop()
        http_department.RESIDENTS.clear()
        http_department.RESIDENTS.update(original)


async def test_without_keys_no_signature_is_passed_on(start_hub):  # type: ignore[no-untyped-def]
    department = http_department.HttpDepartment(signer=signer).start()
    try:
        server = await start_hub(
            [
                http_adapter(department.base_url, keys=False),
            ]
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await lookup(channel, WANG, "H-3")
            mine = [r for r in answer.records if r.provenance.adapter_id == "psb.http-signed"]
            assert {r.provenance.source_record_id for r in mine} == {"R1", "R1b"}
            assert all(not r.provenance.department_signature for r in mine)
    finally:
        department.stop()


async def test_the_signature_field_is_configurable_per_mapping(start_hub):  # type: ignore[no-untyped-def]
    department = http_department.HttpDepartment(signer=signer).start()
    try:
        adapter = http_adapter(department.base_url, keys=True, signature_field="jws")
        server = await start_hub([adapter])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await lookup(channel, WANG, "H-4")
            # The department put its JWS under "signature"; this mapping reads "jws".
            assert not [r for r in answer.records if r.provenance.adapter_id == "psb.http-signed"]
            reasons = {r.source_record_id: r.reason for r in answer.rejected}
            assert "no department signature" in reasons["R1"], reasons
    finally:
        department.stop()


async def test_records_synced_from_an_http_department_keep_their_signature(start_hub):  # type: ignore[no-untyped-def]
    department = http_department.HttpDepartment(signer=signer).start()
    try:
        adapter = http_adapter(department.base_url, keys=True, changes=True)
        server = await start_hub([adapter])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            started = await stub.Start(
                sync_pb2.SyncServiceStartRequest(
                    adapter_id="psb.http-signed", mode=sync_pb2.SYNC_MODE_FULL
                )
            )
            request = sync_pb2.SyncServiceWatchRequest(job_id=started.job.job_id)
            updates = [answer.job async for answer in stub.Watch(request, timeout=60)]
        last = updates[-1]
        assert last.state == sync_pb2.SYNC_JOB_STATE_SUCCEEDED, last
        # R1 signed right is applied; R3 (another key), R4 (bad key), R5 (a deletion
        # this mapping cannot read: no deleted_field) and R6 (unsigned) are not.
        assert (last.progress.applied, last.progress.dead_lettered) == (1, 4), last.progress
        signatures = server.hub.signatures
        assert signatures is not None
        kept = signatures.find([("psb.http-signed", RESIDENT, r) for r in ("R1", "R3", "R6")])
        assert kept == {("psb.http-signed", RESIDENT, "R1"): signer(http_department.CHANGES[0])}
        repository = SyncJobRepository(server.hub.database)
        reasons = {
            letter.source_record_id: letter.reason
            for letter in repository.dead_letters("psb.http-signed")
        }
        assert "not a key of this department" in reasons["R3"], reasons
        assert "no department signature" in reasons["R6"], reasons
    finally:
        department.stop()
