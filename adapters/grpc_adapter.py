"""The `grpc` adapter kind: a remote department service implementing `DepartmentAdapter`.

The department already names its records' fields as the record types declare, so no
mapping is needed; the adapter re-validates what arrives (every subject key goes
through `parse_key` again) and turns protobuf messages into domain objects here, at
the boundary. A record that breaks a rule is rejected with the reason.

Status codes: UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retryable
`AdapterError`s; NOT_FOUND from Fetch means the source has nothing (an empty answer);
any other code, NOT_FOUND in a change stream included, is a non-retryable
`AdapterError` naming the code. One channel per adapter, opened on first use and
closed by `close()`.

A department that comes back is reached again promptly: the channel retries its
connection at most 1 s apart (gRPC's default backoff grows to
two minutes, so after a long outage the hub would not even try for a while), and the
circuit breaker's half-open probe waits for the channel to connect, within the call's
timeout, instead of failing at once on a channel that is between two attempts.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self

import grpc
from google.protobuf import json_format, struct_pb2
from pydantic import field_validator, model_validator

from adapters.base import Adapter, AdapterSpec, Change, ChangeBatch, ChangeKind, Rejection
from adapters.mapping import OptionsModel, parse_options, record_matches
from adapters.resilience import CircuitState
from domain.errors import AdapterError, AdapterTimeout, InvalidKey
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey, mask_identifiers, parse_key
from exchange.generated import adapters_pb2, adapters_pb2_grpc, common_pb2

__all__ = ["GrpcAdapter", "GrpcOptions", "GrpcTlsOptions"]

_TARGET: Final = re.compile(
    r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$"
)
_RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# gRPC connection backoff (doc/connection-backoff.md): first retry after 100 ms, then
# x1.6 with jitter, but never more than 1 s apart (default: 1 s, growing to 120 s). The
# minimum connect timeout (`grpc.min_reconnect_backoff_ms`, 20 s) stays: a busy
# department may take a while to finish its handshake.
_RECONNECT_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
# Integers beyond 2**53 do not survive a protobuf Struct's double.
_EXACT_INTEGER: Final = 2**53


class GrpcTlsOptions(OptionsModel):
    """mTLS to the department: the CA that issued its server certificate, and the hub's
    own client certificate and key. Without `cert_file`/`key_file` it is server-only TLS."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    # Name to expect in the department's certificate, when it differs from the target host.
    server_name: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files and build channel credentials. Raises `OSError`."""

        def read(path: str | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


class GrpcOptions(OptionsModel):
    """Options of a `grpc` adapter."""

    target: str
    tls: GrpcTlsOptions | None = None

    @field_validator("target")
    @classmethod
    def _target_shape(cls, value: str) -> str:
        match = _TARGET.match(value)
        if not match or not 0 < int(match.group(3)) < 65536:
            raise ValueError(f"must be HOST:PORT with a port in 1..65535, got {value!r}")
        return value


def _host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` of a validated target."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


class GrpcAdapter(Adapter):
    """Calls a department's `tongban.v1.DepartmentAdapter` service over gRPC."""

    def __init__(self, spec: AdapterSpec) -> None:
        """Raises `InvalidRequest` naming the option when the options are invalid.

        Nothing connects here: the channel is opened on the first call.
        """
        options = parse_options(GrpcOptions, spec.options)
        super().__init__(spec)
        self.options = options
        self._channel: grpc.aio.Channel | None = None
        self._stub: adapters_pb2_grpc.DepartmentAdapterAsyncStub | None = None
        self._pinned: tuple[str, tuple[tuple[str, str], ...]] | None = None

    async def _pin(self) -> None:
        """With a connect guard: resolve the target once, check it, and dial that address
        only (so a later DNS answer cannot move the channel). Raises `AdapterError`."""
        guard = self.spec.guard
        if guard is None or self._pinned is not None:
            return
        host, port = _host_port(self.options.target)
        address = await asyncio.to_thread(guard.permit, host, port)
        dial = f"ipv6:[{address}]:{port}" if ":" in address else f"ipv4:{address}:{port}"
        self._pinned = (dial, (("grpc.default_authority", self.options.target),))

    @property
    def stub(self) -> adapters_pb2_grpc.DepartmentAdapterAsyncStub:
        """The department's stub, on a channel opened on first use.

        Raises `AdapterError` when the TLS files cannot be read.
        """
        if self._stub is None:
            tls = self.options.tls
            target, options = self._pinned or (self.options.target, ())
            if tls is None:
                self._channel = grpc.aio.insecure_channel(
                    target, options=(*_RECONNECT_OPTIONS, *options)
                )
            else:
                try:
                    credentials = tls.credentials()
                except OSError as exc:
                    raise AdapterError(self.adapter_id, f"TLS files: {exc}") from exc
                host = _host_port(self.options.target)[0]
                name = tls.server_name or (host if self._pinned else None)
                override = (("grpc.ssl_target_name_override", name),) if name else ()
                self._channel = grpc.aio.secure_channel(
                    target, credentials, options=(*_RECONNECT_OPTIONS, *options, *override)
                )
            self._stub = adapters_pb2_grpc.DepartmentAdapterStub(self._channel)
        assert self._stub is not None
        return self._stub

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord | Rejection]:
        request = adapters_pb2.FetchRequest(
            subject=_subject_to_proto(subject),
            record_types=list(record_types),
            purpose=common_pb2.Purpose(case_id=purpose.case_id, reason=purpose.reason),
        )
        # A half-open probe decides whether the circuit closes: let it wait for the
        # channel's next connection attempt rather than fail between two attempts.
        probing = self.breaker.state is CircuitState.HALF_OPEN
        await self._pin()
        try:
            response = await self.stub.Fetch(
                request, timeout=self.spec.timeout, wait_for_ready=probing
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise self._error(exc) from exc
        answer: list[SourceRecord | Rejection] = []
        for position, message in enumerate(response.records):
            try:
                record = record_from_proto(message)
            except _Malformed as exc:
                record_id = message.source_record_id or f"#{position}"
                answer.append(Rejection(record_id, str(exc), _raw(message)))
                continue
            if not record_matches(record, subject):
                reason = "the record's subject is not the requested subject"
                answer.append(Rejection(record.source_record_id, reason))
                continue
            answer.append(record)
        return answer

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        request = adapters_pb2.ChangesRequest(cursor=cursor or "", batch_size=max(1, batch_size))
        await self._pin()
        try:
            async for response in self.stub.Changes(request):
                yield ChangeBatch(
                    tuple(_change_from_proto(change) for change in response.changes),
                    response.cursor,
                    response.total_estimate or None,
                )
        except grpc.aio.AioRpcError as exc:
            # NOT_FOUND here (an unknown cursor, say) is an error: it must not look done.
            raise self._error(exc) from exc

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close(None)

    def _error(self, exc: grpc.aio.AioRpcError) -> AdapterError:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return AdapterTimeout(self.adapter_id, self.spec.timeout)
        details = mask_identifiers(exc.details() or "")
        message = f"{code.name}: {details}" if details else code.name
        return AdapterError(self.adapter_id, message, retryable=code in _RETRYABLE)


class _Malformed(Exception):
    """A protobuf record breaks a rule; the message is the rejection reason."""


def record_from_proto(message: adapters_pb2.SourceRecord) -> SourceRecord:
    """A domain record from a department's protobuf record, keys re-validated.

    Raises `_Malformed` with the reason when a rule is broken.
    """
    if not message.record_type:
        raise _Malformed("no record_type")
    if not message.source_record_id:
        raise _Malformed("no source_record_id")
    if not message.HasField("subject"):
        raise _Malformed("no subject")
    subject = _subject_from_proto(message.subject, "subject")
    related = tuple(
        _subject_from_proto(key, f"related_subjects[{i}]")
        for i, key in enumerate(message.related_subjects)
    )
    updated_at: datetime | None = None
    if message.HasField("updated_at"):
        updated_at = message.updated_at.ToDatetime(tzinfo=UTC)
    return SourceRecord(
        record_type=message.record_type,
        source_record_id=message.source_record_id,
        subject=subject,
        fields=struct_to_dict(message.fields),
        related_subjects=related,
        updated_at=updated_at,
        signature=message.signature or None,
    )


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python, with integral numbers as `int` (Struct holds doubles)."""
    return {name: _value(value) for name, value in message.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    which = value.WhichOneof("kind")
    if which == "number_value":
        number = value.number_value
        if math.isfinite(number) and number.is_integer() and abs(number) <= _EXACT_INTEGER:
            return int(number)
        return number
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "struct_value":
        return struct_to_dict(value.struct_value)
    if which == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None


def _subject_from_proto(message: common_pb2.SubjectKey, field: str) -> SubjectKey:
    if message.kind == common_pb2.KEY_KIND_UNSPECIFIED:
        raise _Malformed(f"{field}: no key kind")
    try:
        kind = KeyKind(common_pb2.KeyKind.Name(message.kind).removeprefix("KEY_KIND_"))
    except ValueError as exc:
        raise _Malformed(f"{field}: unknown key kind {message.kind}") from exc
    try:
        return parse_key(kind, message.value)
    except InvalidKey as exc:
        raise _Malformed(f"{field}: {kind}: {exc.key_rule}") from exc


def _raw(message: adapters_pb2.SourceRecord) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _subject_to_proto(subject: SubjectKey) -> common_pb2.SubjectKey:
    return common_pb2.SubjectKey(
        kind=common_pb2.KeyKind.Value(f"KEY_KIND_{subject.kind.value}"), value=subject.value
    )


def _change_from_proto(message: adapters_pb2.Change) -> Change:
    record_type = message.record.record_type
    record_id = message.record.source_record_id
    if message.kind == adapters_pb2.CHANGE_KIND_DELETE:
        if not record_type or not record_id:
            reason = "a DELETE needs record_type and source_record_id"
            return Change(ChangeKind.REJECTED, record_type, record_id, reason=reason)
        return Change(ChangeKind.DELETE, record_type, record_id)
    if message.kind != adapters_pb2.CHANGE_KIND_UPSERT:
        return Change(ChangeKind.REJECTED, record_type, record_id, reason="no change kind")
    try:
        record = record_from_proto(message.record)
    except _Malformed as exc:
        return Change(
            ChangeKind.REJECTED, record_type, record_id, reason=str(exc), raw=_raw(message.record)
        )
    return Change(ChangeKind.UPSERT, record.record_type, record.source_record_id, record)
