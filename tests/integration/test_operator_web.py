"""The hub's HTTP port: Prometheus metrics and health, as an operator scrapes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import httpx
import sqlalchemy as sa
from google.protobuf import struct_pb2

from certstore.models import SyncCursorRow
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
    verification_pb2,
    verification_pb2_grpc,
)

PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")


async def test_metrics_cover_rpcs_adapters_circuits_and_the_audit_chain(start_hub):
    server = await start_hub(http=True)
    chain_at_start, _ = server.hub.audit.store.head()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await exchange_pb2_grpc.ExchangeServiceStub(channel).Lookup(
            exchange_pb2.LookupRequest(
                subject=PERSON, purpose=common_pb2.Purpose(case_id="C", reason="metrics")
            )
        )
        fields = struct_pb2.Struct()
        fields.update(
            {
                "name": "示例公司",
                "legal_representative": "高勇",
                "registered_capital_cny": 100000,
                "established": "2020-01-02",
                "address": "南京市",
            }
        )
        issued = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(
            certificates_pb2.IssueRequest(
                request_id="metrics-1",
                type_code="11100000000013338W001",
                holder=common_pb2.SubjectKey(
                    kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43"
                ),
                issuer_uscc="11320100MB1111116K",
                fields=fields,
            )
        )
        await verification_pb2_grpc.VerificationServiceStub(channel).Verify(
            verification_pb2.VerifyRequest(token=issued.certificate.token)
        )
    with server.hub.database.core_transaction() as connection:
        # A sync job of psb.population committed its cursor ten minutes ago.
        connection.execute(
            sa.insert(SyncCursorRow).values(
                adapter_id="psb.population",
                cursor="c-1",
                updated_at=datetime.now(UTC) - timedelta(minutes=10),
            )
        )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.web.port}") as client:
        metrics = await client.get("/metrics")
        health = await client.get("/healthz")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'tongban_rpc_duration_seconds_count{code="OK",method="ExchangeService/Lookup"}' in text
    assert (
        'tongban_adapter_fetch_duration_seconds_count{adapter="psb.population",outcome="OK"}'
        in text
    )
    assert 'tongban_adapter_circuit_state{adapter="psb.population"} 0.0' in text
    assert 'tongban_adapter_alive{adapter="amr.business"} 1.0' in text
    assert f"tongban_audit_chain_length {chain_at_start + 2}.0" in text
    assert 'tongban_certificates_issued_total{type_code="11100000000013338W001"}' in text
    assert 'tongban_certificates_verified_total{valid="true"}' in text
    assert health.json() == {"database": True}
    (lag_line,) = [
        line for line in text.splitlines() if line.startswith("tongban_sync_lag_seconds{")
    ]
    assert 'adapter="psb.population"' in lag_line
    assert 600 <= float(lag_line.split()[-1]) < 700
