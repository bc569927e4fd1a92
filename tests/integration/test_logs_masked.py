"""Personal identifiers never appear unmasked in log lines, across a whole lookup."""

from __future__ import annotations

import contextlib
import io

import grpc

from exchange.generated import common_pb2, exchange_pb2, exchange_pb2_grpc
from exchange.logs import configure_logging

ID = "11010519491231002X"
USCC = "91350100M000100Y43"


async def test_a_full_lookup_logs_no_unmasked_identifier(start_hub):
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    try:
        server = await start_hub()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
            purpose = common_pb2.Purpose(case_id="C-1", reason=f"applicant {ID} for {USCC}")
            for kind, value in (
                (common_pb2.KEY_KIND_ID_CARD, ID),
                (common_pb2.KEY_KIND_USCC, USCC),
                (common_pb2.KEY_KIND_ID_CARD, "110105194912310021"),  # refused: logged as error
            ):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Lookup(
                        exchange_pb2.LookupRequest(
                            subject=common_pb2.SubjectKey(kind=kind, value=value), purpose=purpose
                        )
                    )
    finally:
        configure_logging()
    logged = stream.getvalue()
    assert "lookup answered" in logged
    assert "110105********002X" in logged
    for identifier in (ID, USCC, "110105194912310021"):
        assert identifier not in logged
