"""A department service implementing `tongban.v1.DepartmentAdapter`, run as its own process.

    python grpc_department.py [--stream-delay SECONDS] [--port PORT] [--sign-seed HEX [--forge ID]]

Binds a free loopback port (or PORT, to come back where it was), prints ``READY <port>``
on stdout, and serves until killed.
Some subjects make it answer with an error status, to exercise the adapter's mapping of
status codes:

- 320106199003071234 -> NOT_FOUND
- 440304198511204567 -> PERMISSION_DENIED
- 310115197208150011 -> RESOURCE_EXHAUSTED

With ``--sign-seed`` (32 bytes in hex, an Ed25519 key) it signs every record it returns
as a department does (`signing.department`); ``--forge R1`` changes that record's
fields after signing, as a forger or a broken signer would.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from domain.subjects import normalize
from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2
from signing.department import sign_record
from signing.keys import SoftwareSigningKey

RESIDENT = "population.resident"
ID_CARD = common_pb2.KEY_KIND_ID_CARD

ERRORS = {
    "320106199003071234": (grpc.StatusCode.NOT_FOUND, "no such resident"),
    "440304198511204567": (grpc.StatusCode.PERMISSION_DENIED, "the hub may not read this"),
    "310115197208150011": (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota used up"),
}


def struct(fields: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(fields)
    return message


def resident(record_id: str, key: str, name: str, **extra: Any) -> adapters_pb2.SourceRecord:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString("2024-05-01T08:00:00Z")
    return adapters_pb2.SourceRecord(
        record_type=RESIDENT,
        source_record_id=record_id,
        subject=common_pb2.SubjectKey(kind=ID_CARD, value=key),
        fields=struct({"name": name, **extra}),
        updated_at=stamp,
    )


# Answers by the key the hub sends (always normalized).
RECORDS = {
    "11010519491231002X": [
        resident("R1", "11010519491231002X", "王伟", age=75, address={"city": "北京市"}),
        # The department's own typo: the check character is wrong. Rejected, not fatal.
        resident("R2", "110105194912310021", "王伟"),
    ],
    # The department stores the key full-width with a lower-case check letter.
    "510107199901013337": [resident("R5", "５１０１０７１９９９０１０１３３３７", "李娜")],
}

CHANGES = [
    adapters_pb2.Change(
        kind=adapters_pb2.CHANGE_KIND_UPSERT,
        record=resident("R1", "11010519491231002X", "王伟", age=75),
    ),
    adapters_pb2.Change(
        kind=adapters_pb2.CHANGE_KIND_UPSERT,
        record=resident("R5", "５１０１０７１９９９０１０１３３３７", "李娜"),
    ),
    adapters_pb2.Change(
        kind=adapters_pb2.CHANGE_KIND_UPSERT, record=resident("R2", "110105194912310021", "王伟")
    ),
    adapters_pb2.Change(
        kind=adapters_pb2.CHANGE_KIND_DELETE,
        record=adapters_pb2.SourceRecord(record_type=RESIDENT, source_record_id="R9"),
    ),
    adapters_pb2.Change(
        kind=adapters_pb2.CHANGE_KIND_UPSERT,
        record=resident("R6", "320106199003071234", "张敏"),
    ),
]


SIGNED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def signing_key(seed_hex: str) -> SoftwareSigningKey:
    return SoftwareSigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)))


def signed(
    record: adapters_pb2.SourceRecord, key: SoftwareSigningKey, forge: set[str]
) -> adapters_pb2.SourceRecord:
    """`record` with the department's signature over it (normalized key, as the hub reads)."""
    copy = adapters_pb2.SourceRecord()
    copy.CopyFrom(record)
    fields = json_format.MessageToDict(record.fields)
    fields = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in fields.items()
    }
    subject = f"ID_CARD:{normalize(record.subject.value)}"
    copy.signature = sign_record(
        key, record.record_type, record.source_record_id, subject, fields, SIGNED_AT
    )
    if record.source_record_id in forge:
        copy.fields.update({"name": "forged"})
    return copy


class Department(adapters_pb2_grpc.DepartmentAdapterServicer):
    def __init__(
        self,
        stream_delay: float,
        key: SoftwareSigningKey | None = None,
        forge: set[str] | None = None,
    ) -> None:
        self.stream_delay = stream_delay
        self.key = key
        self.forge = forge or set()

    async def Fetch(
        self, request: adapters_pb2.FetchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> adapters_pb2.FetchResponse:
        if not request.purpose.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "purpose.case_id is required")
        key = request.subject.value
        if key in ERRORS:
            code, details = ERRORS[key]
            await context.abort(code, details)
        records = [r for r in RECORDS.get(key, []) if r.record_type in request.record_types]
        if self.key is not None:
            records = [signed(r, self.key, self.forge) for r in records]
        return adapters_pb2.FetchResponse(records=records)

    async def Changes(
        self, request: adapters_pb2.ChangesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[adapters_pb2.ChangesResponse]:
        start = int(request.cursor or 0)
        size = max(1, request.batch_size)
        for position in range(start, len(CHANGES), size):
            if position > start:
                await asyncio.sleep(self.stream_delay)
            batch = CHANGES[position : position + size]
            yield adapters_pb2.ChangesResponse(
                changes=batch,
                cursor=str(position + len(batch)),
                total_estimate=len(CHANGES) - start,
            )


async def serve(
    stream_delay: float, port: int, key: SoftwareSigningKey | None, forge: set[str]
) -> None:
    server = grpc.aio.server()
    adapters_pb2_grpc.add_DepartmentAdapterServicer_to_server(
        Department(stream_delay, key, forge), server
    )
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"READY {port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream-delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sign-seed", default=None)
    parser.add_argument("--forge", action="append", default=[])
    args = parser.parse_args()
    key = signing_key(args.sign_seed) if args.sign_seed else None
    asyncio.run(serve(args.stream_delay, args.port, key, set(args.forge)))


if __name__ == "__main__":
    main()
