"""A bare grpc.aio server answering every ExchangeService/Lookup with fixed bytes.

The baseline of the per-call benchmark: gRPC machinery alone, no hub logic. Run as
``python -m bench.echo_server PAYLOAD_FILE PORT``; it serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import grpc


async def serve(payload: bytes, port: int) -> None:
    async def lookup(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return payload

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "tongban.v1.ExchangeService",
        {
            "Lookup": grpc.unary_unary_rpc_method_handler(
                lookup, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]).read_bytes(), int(sys.argv[2])))
