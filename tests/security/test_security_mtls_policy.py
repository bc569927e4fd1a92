"""Secure mode end to end: mTLS identity, purpose-bound policy, minimization, audit."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2

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

PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
COMPANY = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43")
PURPOSE = common_pb2.Purpose(case_id="2026-0042", reason="企业开办: 设立登记")


def lookup(channel, subject=PERSON, purpose=PURPOSE, types=()):
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    return stub.Lookup(
        exchange_pb2.LookupRequest(subject=subject, purpose=purpose, record_types=list(types)),
        timeout=5,
    )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_allowed_caller_gets_only_the_fields_its_policy_names(channel_for):
    answer = await lookup(channel_for("hall"))
    (record,) = answer.records
    assert set(record.fields.keys()) == {"name", "birth_date"}


async def test_sources_of_other_record_types_are_reported_denied_not_called(channel_for):
    answer = await lookup(channel_for("hall"), subject=COMPANY)
    assert [(s.adapter_id, s.outcome) for s in answer.sources] == [
        ("amr.business", common_pb2.SOURCE_OUTCOME_DENIED)
    ]
    assert list(answer.records) == []


async def test_asking_for_a_forbidden_record_type_is_denied_naming_it(channel_for):
    error = await refused(lookup(channel_for("hall"), types=["market.business_license"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "market.business_license" in error.details()


async def test_a_reason_outside_the_policy_is_denied(channel_for):
    purpose = common_pb2.Purpose(case_id="2026-0042", reason="curiosity")
    error = await refused(lookup(channel_for("hall"), purpose=purpose))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "reason" in error.details()


async def test_a_caller_without_policy_is_denied_by_default_but_may_verify(channel_for):
    channel = channel_for("stranger")
    error = await refused(lookup(channel))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    verify = verification_pb2_grpc.VerificationServiceStub(channel).Verify(
        verification_pb2.VerifyRequest(token="x.y.z"), timeout=5
    )
    (outcome,) = await asyncio.gather(verify, return_exceptions=True)
    code = outcome.code() if isinstance(outcome, grpc.aio.AioRpcError) else grpc.StatusCode.OK
    assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


@pytest.mark.parametrize("who", ["revoked"])
async def test_revoked_certificates_are_unauthenticated(channel_for, who):
    error = await refused(lookup(channel_for(who)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in error.details()


async def test_expired_certificates_and_no_certificate_are_refused(channel_for):
    for who in ("expired", None):
        error = await refused(lookup(channel_for(who)))
        # The TLS handshake itself refuses them: no call reaches the hub.
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()


def _registration(owner_uscc: str) -> adapters_pb2.RegisterRequest:
    settings = struct_pb2.Struct()
    settings.update({"entry_point": "demo-population"})
    return adapters_pb2.RegisterRequest(
        spec=adapters_pb2.AdapterSpec(
            adapter_id="psb.population-backup",
            department="市公安局",
            department_uscc=owner_uscc,
            kind=adapters_pb2.ADAPTER_KIND_PYTHON,
            serves=[
                adapters_pb2.RecordTypeBinding(
                    record_type="population.resident", key_kinds=[common_pb2.KEY_KIND_ID_CARD]
                )
            ],
            settings=settings,
        )
    )


async def test_only_the_owning_department_registers_its_adapter(channel_for):
    registry = adapters_pb2_grpc.AdapterRegistryStub(channel_for("psb"))
    error = await refused(registry.Register(_registration("91350100M000100Y43")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = await registry.Register(_registration("11320100MB0000000J"))
    assert answer.adapter.spec.adapter_id == "psb.population-backup"
    hall = adapters_pb2_grpc.AdapterRegistryStub(channel_for("hall"))
    error = await refused(
        hall.Deregister(adapters_pb2.DeregisterRequest(adapter_id="psb.population-backup"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_access_report_for_auditor_and_the_subjects_own_channel_only(channel_for):
    await lookup(channel_for("hall"))
    await refused(lookup(channel_for("hall"), types=["market.business_license"]))
    request = audit_pb2.ListAccessRequest(subject=PERSON)
    for who in ("auditor", "citizen"):
        report = await audit_pb2_grpc.AuditServiceStub(channel_for(who)).ListAccess(request)
        assert [(e.caller, e.outcome) for e in report.entries] == [
            ("91350100M000100Y43/hall-approval", "LOOKUP OK"),
            ("91350100M000100Y43/hall-approval", "LOOKUP DENIED"),
        ]
        first = report.entries[0]
        assert first.purpose.case_id == "2026-0042"
        assert list(first.record_types) == ["population.resident"]
        assert list(first.fields_returned) == [
            "population.resident.birth_date",
            "population.resident.name",
        ]
        assert list(first.sources) == ["psb.population"]
    other = audit_pb2.ListAccessRequest(subject=COMPANY)
    error = await refused(audit_pb2_grpc.AuditServiceStub(channel_for("citizen")).ListAccess(other))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(audit_pb2_grpc.AuditServiceStub(channel_for("hall")).ListAccess(request))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_refused_calls_are_audited_and_the_chain_verifies(channel_for):
    await refused(lookup(channel_for("stranger")))
    await refused(lookup(channel_for("revoked")))
    auditor = audit_pb2_grpc.AuditServiceStub(channel_for("auditor"))
    answer = await auditor.VerifyChain(audit_pb2.VerifyChainRequest())
    assert answer.intact
    assert answer.entries_checked == 2
    error = await refused(
        audit_pb2_grpc.AuditServiceStub(channel_for("hall")).VerifyChain(
            audit_pb2.VerifyChainRequest()
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_cli_reaches_a_production_hub_with_a_client_certificate(
    secure_hub, pki, tongban_cli
):
    def tls(who):
        files = pki.clients[who]
        return [
            "--hub", f"localhost:{secure_hub.port}", "--tls-ca", str(pki.folder / "ca.crt"),
            "--tls-cert", str(files.certificate), "--tls-key", str(files.private_key),
        ]  # fmt: skip

    lookup = ["lookup", "ID_CARD", PERSON.value, "--case", "C-7", "--reason", "企业开办", "--json"]
    as_hall = await tongban_cli(*lookup, *tls("hall"))
    adapters_as_psb = await tongban_cli("adapters", "list", *tls("psb"))
    adapters_as_hall = await tongban_cli("adapters", "list", *tls("hall"))
    plaintext = await tongban_cli(
        *lookup, "--hub", f"localhost:{secure_hub.port}", "--deadline", "2"
    )

    assert as_hall.returncode == 0, as_hall.stderr
    assert '"population.resident"' in as_hall.stdout
    assert adapters_as_psb.returncode == 0, adapters_as_psb.stderr
    assert "psb.population" in adapters_as_psb.stdout
    assert adapters_as_hall.returncode == 1
    assert adapters_as_hall.stderr.startswith("tongban: PERMISSION_DENIED")
    assert plaintext.returncode == 1
    assert len(plaintext.stderr.strip().splitlines()) == 1, plaintext.stderr
    assert plaintext.stderr.startswith("tongban: UNAVAILABLE")
