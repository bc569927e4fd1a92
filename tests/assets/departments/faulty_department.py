"""Department services that misbehave on purpose, one per port, in one process.

    python faulty_department.py

Prints one JSON line ``{"ok": port, "hang": port, ...}`` on stdout when serving, then
serves until killed. Every mode answers `DepartmentAdapter.Fetch` for ID-card keys:

- ok: one valid population record, at once;
- hang: never answers;
- slow: answers correctly after 3 seconds;
- error: fails every call with INTERNAL;
- malformed: one valid record, one with a bad subject key, one with a mistyped field;
- flap: fails every other call with UNAVAILABLE (retryable), answers otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from typing import Any

import grpc
from google.protobuf import struct_pb2

from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2

RESIDENT = "population.resident"


def record(record_id: str, key: str, **fields: Any) -> adapters_pb2.SourceRecord:
    values = struct_pb2.Struct()
    values.update({"name": "赵敏", "gender": "女", "birth_date": "1949-12-31", **fields})
    return adapters_pb2.SourceRecord(
        record_type=RESIDENT,
        source_record_id=record_id,
        subject=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value=key),
        fields=values,
    )


class Department(adapters_pb2_grpc.DepartmentAdapterServicer):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = itertools.count()

    async def Fetch(
        self, request: adapters_pb2.FetchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapters_pb2.FetchResponse:
        key = request.subject.value
        call = next(self.calls)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "slow":
            await asyncio.sleep(3)
        if self.mode == "error":
            await context.abort(grpc.StatusCode.INTERNAL, "department database exploded")
        if self.mode == "flap" and call % 2 == 0:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "department restarting")
        records = [record(f"{self.mode}-1", key)]
        if self.mode == "malformed":
            records.append(record(f"{self.mode}-bad-key", key[:-1] + "0"))
            records.append(record(f"{self.mode}-bad-date", key, birth_date="last winter"))
        return adapters_pb2.FetchResponse(records=records)


async def main() -> None:
    ports: dict[str, int] = {}
    servers = []
    for mode in ("ok", "hang", "slow", "error", "malformed", "flap"):
        server = grpc.aio.server()
        adapters_pb2_grpc.add_DepartmentAdapterServicer_to_server(Department(mode), server)
        ports[mode] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
