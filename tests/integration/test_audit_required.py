"""There is no access without its audit entry: when the trail cannot be written, the
lookup fails and answers nothing."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa

from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)

PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
PURPOSE = common_pb2.Purpose(case_id="C-A", reason="audit test")


async def test_lookup_fails_when_its_audit_entry_cannot_be_written(start_hub):
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        await stub.Lookup(exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE))
        with server.hub.database.core_transaction() as connection:
            connection.execute(sa.text("DROP TABLE audit_log"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Lookup(
                exchange_pb2.LookupRequest(subject=PERSON, purpose=PURPOSE), timeout=10
            )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "audit trail cannot be written" in raised.value.details()


async def test_every_lookup_is_in_the_access_report(start_hub):
    server = await start_hub()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        for case in ("C-1", "C-2", "C-3"):
            await stub.Lookup(
                exchange_pb2.LookupRequest(
                    subject=PERSON, purpose=common_pb2.Purpose(case_id=case, reason="test")
                )
            )
        report = await audit_pb2_grpc.AuditServiceStub(channel).ListAccess(
            audit_pb2.ListAccessRequest(subject=PERSON, page_size=2)
        )
        assert [e.purpose.case_id for e in report.entries] == ["C-1", "C-2"]
        rest = await audit_pb2_grpc.AuditServiceStub(channel).ListAccess(
            audit_pb2.ListAccessRequest(subject=PERSON, page_token=report.next_page_token)
        )
        assert [e.purpose.case_id for e in rest.entries] == ["C-3"]
        assert not rest.next_page_token
