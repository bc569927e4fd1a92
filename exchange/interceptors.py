"""The server interceptor every `tongban.v1` call passes through.

It gives each call a request id (taken from ``x-request-id`` metadata when the caller
sends a well-formed one), binds it to the log context, decodes the request itself so a
malformed message is INVALID_ARGUMENT rather than INTERNAL (and checks it against the
wire rules of `exchange.services.wire_checks`), converts `TongbanError` to
its gRPC status (`exchange.status.to_status`), and logs and measures the call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from domain.errors import InvalidRequest, PermissionDenied, TongbanError
from exchange.auth.gate import Gate
from exchange.logs import REQUEST_ID_PATTERN, new_request_id
from exchange.metrics import RPC_LATENCY
from exchange.services.wire_checks import check_message
from exchange.status import internal_status, status_code_for, to_status

REQUEST_ID_HEADER = "x-request-id"
_OWN_PREFIX = "/tongban.v1."

log = structlog.get_logger("tongban.rpc")

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor

Deserializer = Callable[[bytes], Any]


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and REQUEST_ID_PATTERN.match(value):
            return value
    return new_request_id()


def _decode(deserializer: Deserializer | None, raw: Any) -> Any:
    if deserializer is None:
        return raw
    try:
        message = deserializer(raw)
    except DecodeError as exc:
        raise InvalidRequest("request", "not a well-formed protobuf message") from exc
    # Control characters, non-finite numbers, out-of-range times: refused here for
    # every method, before anything reaches a servicer, the store or the audit batch.
    check_message(message)
    return message


class _Call:
    """One call's request id, timing, logging and error conversion."""

    def __init__(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], gate: Gate
    ) -> None:
        self.method = method
        self.context = context
        self.gate = gate
        self.request_id = _request_id(context)
        self.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=self.request_id, rpc=method)
        context.set_trailing_metadata(((REQUEST_ID_HEADER, self.request_id),))

    def finish(self, code: grpc.StatusCode, detail: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        RPC_LATENCY.labels(method=self.method, code=code.name).observe(elapsed)
        level = log.info if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else log.warning
        level("rpc finished", code=code.name, ms=round(elapsed * 1000, 2), detail=detail or None)
        structlog.contextvars.unbind_contextvars("request_id", "rpc")

    async def fail(self, exc: BaseException) -> None:
        """Abort the call with the status for `exc` (always raises)."""
        if isinstance(exc, grpc.aio.AbortError):
            self.finish(self.context.code() or grpc.StatusCode.UNKNOWN)
            raise exc
        if isinstance(exc, PermissionDenied) and not exc.audited:
            try:
                await self.gate.record_denial(self.method, exc)
            except TongbanError as failure:
                exc = failure
        if isinstance(exc, TongbanError):
            code = status_code_for(exc)
            self.finish(code, exc.message)
            await self._abort(to_status(exc))
        log.exception("rpc crashed", exc_info=exc)
        self.finish(grpc.StatusCode.INTERNAL, type(exc).__name__)
        await self._abort(internal_status(self.request_id))

    async def _abort(self, status: grpc.Status) -> None:
        await self.context.abort(
            status.code,
            status.details,
            status.trailing_metadata,
        )


class TongbanInterceptor(_Interceptor):
    """Wraps every `tongban.v1` method; health and reflection pass through untouched.

    Every wrapped call first passes the `gate` (caller identity and RPC policy).
    """

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_OWN_PREFIX):
            return handler
        return _wrap(method.removeprefix(_OWN_PREFIX), handler, self.gate)


def _wrap(method: str, handler: Any, gate: Gate) -> Any:
    """A handler like `handler` whose behaviour runs inside a `_Call`, behind the gate."""
    decode = handler.request_deserializer
    serialize = handler.response_serializer

    if handler.unary_unary is not None:
        behaviour = handler.unary_unary

        async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(method, context, gate)
            try:
                await gate.admit(method, context)
                response = await behaviour(_decode(decode, raw), context)
            except Exception as exc:
                await call.fail(exc)
            call.finish(grpc.StatusCode.OK)
            return response

        return grpc.unary_unary_rpc_method_handler(unary_unary, response_serializer=serialize)

    if handler.unary_stream is not None:
        stream_behaviour = handler.unary_stream

        async def unary_stream(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = _Call(method, context, gate)
            try:
                await gate.admit(method, context)
                async for item in stream_behaviour(_decode(decode, raw), context):
                    yield item
            except Exception as exc:
                await call.fail(exc)
            call.finish(grpc.StatusCode.OK)

        return grpc.unary_stream_rpc_method_handler(unary_stream, response_serializer=serialize)

    if handler.stream_stream is not None:
        bidi_behaviour = handler.stream_stream

        async def stream_stream(
            raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = _Call(method, context, gate)

            async def requests() -> AsyncIterator[Any]:
                async for raw in raw_requests:
                    yield _decode(decode, raw)

            try:
                await gate.admit(method, context)
                async for item in bidi_behaviour(requests(), context):
                    yield item
            except Exception as exc:
                await call.fail(exc)
            call.finish(grpc.StatusCode.OK)

        return grpc.stream_stream_rpc_method_handler(stream_stream, response_serializer=serialize)

    # No tongban.v1 method is client-streaming only; keep anything else as it is.
    return handler
