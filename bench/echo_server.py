"""A bare grpc.aio server answering with fixed bytes: the baseline of gRPC machinery alone.

Every ExchangeService/Lookup gets the bytes of PAYLOAD_FILE; with STREAM_FILE, every
message of a VerificationService/VerifyStream gets the bytes of STREAM_FILE, one answer
per request as the hub gives. No hub logic runs. Run as
``python -m bench.echo_server PAYLOAD_FILE PORT [STREAM_FILE]``; it serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]


async def serve(payload: bytes, port: int, stream_payload: bytes | None = None) -> None:
    async def lookup(request: bytes, context: Context) -> bytes:
        return payload

    server = grpc.aio.server()
    handlers = [
        grpc.method_handlers_generic_handler(
            "tongban.v1.ExchangeService",
            {
                "Lookup": grpc.unary_unary_rpc_method_handler(
                    lookup, request_deserializer=None, response_serializer=None
                )
            },
        )
    ]
    if stream_payload is not None:
        answer = stream_payload

        async def verify_stream(
            requests: AsyncIterator[bytes], context: Context
        ) -> AsyncIterator[bytes]:
            async for _ in requests:
                yield answer

        handlers.append(
            grpc.method_handlers_generic_handler(
                "tongban.v1.VerificationService",
                {
                    "VerifyStream": grpc.stream_stream_rpc_method_handler(
                        verify_stream, request_deserializer=None, response_serializer=None
                    )
                },
            )
        )
    server.add_generic_rpc_handlers(handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await server.stop(0)


if __name__ == "__main__":
    stream = Path(sys.argv[3]).read_bytes() if len(sys.argv) > 3 else None
    asyncio.run(serve(Path(sys.argv[1]).read_bytes(), int(sys.argv[2]), stream))
