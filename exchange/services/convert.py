"""Translation between `tongban.v1` protobuf messages and Tongban's domain objects."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from domain.errors import InvalidRequest
from domain.records import Purpose, StoredRecord
from domain.subjects import KeyKind, SubjectKey, parse_key
from exchange.generated import common_pb2
from exchange.routing import SourceResult

MAX_KEY_LENGTH = 128


def subject_from_proto(message: common_pb2.SubjectKey, field: str = "subject") -> SubjectKey:
    """Validate and normalize a protobuf subject key. Raises `InvalidRequest`/`InvalidKey`."""
    if message.kind == common_pb2.KEY_KIND_UNSPECIFIED:
        raise InvalidRequest(f"{field}.kind", "a key kind is required")
    if message.kind not in common_pb2.KeyKind.values():
        raise InvalidRequest(f"{field}.kind", f"unknown key kind {message.kind}")
    if len(message.value) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"{field}.value", f"at most {MAX_KEY_LENGTH} characters")
    kind = KeyKind(common_pb2.KeyKind.Name(message.kind).removeprefix("KEY_KIND_"))
    try:
        return parse_key(kind, message.value)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{field}.value", exc.rule) from exc


def subject_to_proto(subject: SubjectKey) -> common_pb2.SubjectKey:
    return common_pb2.SubjectKey(
        kind=common_pb2.KeyKind.Value(f"KEY_KIND_{subject.kind.value}"), value=subject.value
    )


def purpose_from_proto(message: common_pb2.Purpose, present: bool) -> Purpose:
    """Raises `InvalidRequest` naming ``purpose`` when it is missing or incomplete."""
    if not present:
        raise InvalidRequest("purpose", "every lookup needs a purpose with case_id and reason")
    return Purpose.checked(message.case_id, message.reason)


def duration_seconds(
    message: duration_pb2.Duration, field: str, *, at_most: float | None = None
) -> float:
    """A non-negative duration in seconds, at most `at_most`. Raises `InvalidRequest`."""
    seconds = message.seconds + message.nanos / 1e9
    if seconds < 0:
        raise InvalidRequest(field, "must not be negative")
    if at_most is not None and seconds > at_most:
        raise InvalidRequest(field, f"must be at most {at_most:g} seconds")
    return seconds


# Sequence numbers are 63-bit integers in every store (SQLite INTEGER, PostgreSQL BIGINT).
MAX_SEQUENCE = 2**63 - 1


def sequence_token(token: str, field: str = "page_token") -> int:
    """The sequence number in a page token this hub issued (0 for none).

    Raises `InvalidRequest` naming `field` for anything else, including numbers no
    store can hold (a 30-digit token once reached the database and failed there).
    """
    if not token:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= 19):
        raise InvalidRequest(field, "not a token this service issued")
    value = int(token)
    if value > MAX_SEQUENCE:
        raise InvalidRequest(field, "not a token this service issued")
    return value


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def duration(seconds: float) -> duration_pb2.Duration:
    span = duration_pb2.Duration()
    span.FromTimedelta(timedelta(seconds=seconds))
    return span


def struct(fields: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(_jsonable(fields))
    return message


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _jsonable(value: Any) -> Any:
    """Struct holds only JSON types; dates and other scalars become strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def record_to_proto(
    record: StoredRecord, *, stale: bool = False, fields: Mapping[str, Any] | None = None
) -> common_pb2.Record:
    """`record` as protobuf; `fields` (the caller's minimized view) replace its fields,
    and the content hash then covers those fields only (`StoredRecord.disclosed`)."""
    order = list(record.fields if fields is None else fields)
    if fields is not None:
        record = record.disclosed(fields)
    return common_pb2.Record(
        record_type=record.record_type,
        subject=subject_to_proto(record.subject),
        related_subjects=[subject_to_proto(s) for s in record.related_subjects],
        fields=struct(record.fields),
        provenance=common_pb2.Provenance(
            adapter_id=record.adapter_id,
            department=record.department,
            source_record_id=record.source_record_id,
            fetched_at=timestamp(record.fetched_at),
            content_hash=record.content_hash,
            department_signature=record.department_signature or "",
        ),
        stale=stale,
        field_order=order,
    )


def source_status_to_proto(result: SourceResult, record_count: int) -> common_pb2.SourceStatus:
    return common_pb2.SourceStatus(
        adapter_id=result.adapter_id,
        outcome=common_pb2.SourceOutcome.Value(f"SOURCE_OUTCOME_{result.outcome.value}"),
        latency=duration(result.latency),
        detail=result.detail,
        record_count=record_count,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
