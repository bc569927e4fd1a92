"""The HTTP/JSON API under ``/api/v1``: every route in `exchange.http.routes.ROUTES`.

One aiohttp application serves them all with one generic handler: admit the caller
through the gate (client certificate or dev token, RPC policy, refusals audited), turn
path, query and body into the RPC's request message, call the servicer method the gRPC
server calls, and answer with its response message as JSON, or NDJSON for a stream.
Every error is an RFC 9457 problem (`exchange.status.problem_for`); no bad input is a
5xx. Production mode serves this application only over HTTPS with client certificates
from the hub's client CA (`api_ssl_context`).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.message import Message

from domain.errors import ConfigError, InvalidRequest, PermissionDenied, TongbanError
from exchange.auth.gate import Gate
from exchange.http import messages
from exchange.http.openapi import openapi_document, reference_page
from exchange.http.routes import PREFIX, ROUTES, Route
from exchange.logs import REQUEST_ID_PATTERN, new_request_id
from exchange.metrics import HTTP_LATENCY
from exchange.settings import Settings
from exchange.status import INTERNAL, PAYLOAD_TOO_LARGE, problem_for

log = structlog.get_logger("tongban.http")

PROBLEM_TYPE: Final = "application/problem+json"
NDJSON: Final = "application/x-ndjson"
REQUEST_ID_HEADER: Final = "X-Request-Id"

Handler = Callable[[Message, Any], Any]


class HttpCallContext:
    """The call context servicer methods get on HTTP (see `exchange.services.context`)."""

    def time_remaining(self) -> float | None:
        # HTTP callers have no deadline header: the hub's default deadline applies.
        return None


def problem_response(problem: Mapping[str, Any], request_id: str) -> web.Response:
    return web.Response(
        status=int(problem["status"]),
        body=json.dumps(problem, ensure_ascii=False).encode(),
        content_type=PROBLEM_TYPE,
        headers={REQUEST_ID_HEADER: request_id},
    )


def _plain_problem(
    status: int, problem_type: str, title: str, detail: str, **extra: Any
) -> dict[str, Any]:
    return {"type": problem_type, "title": title, "status": status, "detail": detail, **extra}


def _request_id(request: web.Request) -> str:
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    return sent if REQUEST_ID_PATTERN.match(sent) else new_request_id()


def _transport_identity(
    request: web.Request,
) -> tuple[dict[str, list[bytes]], list[tuple[str, str]]]:
    """The caller's facts as gRPC names them: verified client certificate, metadata."""
    auth: dict[str, list[bytes]] = {}
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
            auth["x509_pem_cert"] = [pem]
    metadata = [("authorization", v) for v in request.headers.getall("Authorization", [])]
    return auth, metadata


class ApiApplication:
    """The aiohttp application serving the route table over `servicers`."""

    def __init__(self, servicers: Mapping[str, object], gate: Gate, settings: Settings) -> None:
        """`servicers` maps each service's full name to the object the gRPC server uses."""
        self.gate = gate
        self.max_body = settings.server.max_message_bytes
        self.app = web.Application(client_max_size=self.max_body, middlewares=[self._problems])
        self.document = openapi_document()
        self.app.router.add_get("/openapi.json", self._openapi)
        self.app.router.add_get("/docs", self._reference)
        for route in ROUTES:
            servicer = servicers.get(route.service)
            if servicer is None:
                continue
            handler = getattr(servicer, route.method)
            self.app.router.add_route(route.http_method, route.path, self._endpoint(route, handler))

    def standalone(self) -> web.Application:
        """An application serving the API under `PREFIX`, for a listener of its own."""
        root = web.Application(client_max_size=self.max_body, middlewares=[self._problems])
        root.add_subapp(PREFIX, self.app)
        return root

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    async def _reference(self, request: web.Request) -> web.Response:
        return web.Response(text=reference_page(self.document), content_type="text/html")

    @web.middleware
    async def _problems(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """aiohttp's own refusals (no such path, wrong method, body too large) as problems."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            request_id = _request_id(request)
            if exc.status == 413:
                problem = _plain_problem(
                    413,
                    PAYLOAD_TOO_LARGE.problem_type,
                    PAYLOAD_TOO_LARGE.title,
                    f"the body is larger than {self.max_body} bytes (server.max_message_bytes)",
                    field="body",
                    rule=f"at most {self.max_body} bytes",
                )
            else:
                problem = _plain_problem(
                    exc.status,
                    "about:blank",
                    exc.reason,
                    f"{request.method} {request.path}: {exc.reason}",
                )
            response = problem_response(problem, request_id)
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    def _endpoint(
        self, route: Route, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        method = messages.method_of(route)
        request_class = messages.message_class(method.input_type)
        path_names = messages.path_parameters(route)
        client_stream = bool(method.client_streaming)
        server_stream = bool(method.server_streaming)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            call = _HttpCall(route, request)
            try:
                auth, metadata = _transport_identity(request)
                await self.gate.admit_call(route.gate_method, auth, metadata)
                path_values = {name: request.match_info[name] for name in path_names}
                context = HttpCallContext()
                if client_stream:
                    arguments: Any = _ndjson_requests(
                        await request.read(), request_class, path_values
                    )
                elif route.http_method in ("GET", "DELETE"):
                    data = messages.from_query(
                        method.input_type, request.query.items(), path_values
                    )
                    arguments = messages.parse(data, request_class)
                else:
                    data = messages.from_body(await request.read(), path_values, method.input_type)
                    arguments = messages.parse(data, request_class)
                for name, value in route.fixed:
                    setattr(arguments, name, value)
                if not server_stream:
                    answer = await handler(arguments, context)
                    if route.media:
                        return call.finish(_file_response(route, answer, call.request_id))
                    return call.finish(
                        web.json_response(
                            messages.to_json(answer), headers={REQUEST_ID_HEADER: call.request_id}
                        )
                    )
                return await call.stream(request, handler(arguments, context))
            except web.HTTPException as exc:  # aiohttp's own (a body too large): as problems
                call.finish(web.Response(status=exc.status), exc.reason)
                raise
            except Exception as exc:
                return await call.fail(exc, self.gate)

        return endpoint


def _file_response(route: Route, answer: Message, request_id: str) -> web.Response:
    """A download route's answer: the response's bytes field as the file itself."""
    name = str(getattr(answer, "file_name", "")) or "download"
    return web.Response(
        body=bytes(getattr(answer, route.body_field)),
        content_type=route.media,
        headers={
            REQUEST_ID_HEADER: request_id,
            # File names are certificate or usage-copy ids: [0-9A-Z.-] only.
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


def _ndjson_requests(
    body: bytes, cls: type[Message], path_values: Mapping[str, str]
) -> AsyncIterator[Message]:
    """A client stream from an NDJSON body: each non-empty line one request message.

    Every line is parsed before the first is handed on, so a bad line is refused (naming
    it) before anything is answered.
    """
    descriptor = messages.descriptor_of(cls)
    parsed: list[Message] = []
    for number, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            data = messages.from_body(line, path_values, descriptor)
            parsed.append(messages.parse(data, cls))
        except InvalidRequest as exc:
            raise InvalidRequest(f"line {number + 1}: {exc.field}", exc.rule) from exc

    async def requests() -> AsyncIterator[Message]:
        for message in parsed:
            yield message

    return requests()


class _HttpCall:
    """One HTTP call's request id, timing, logging and error conversion."""

    def __init__(self, route: Route, request: web.Request) -> None:
        self.route = route
        self.request_id = _request_id(request)
        self.instance = request.path
        self.started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=self.request_id, rpc=route.rpc)

    def finish(self, response: web.StreamResponse, detail: str = "") -> web.StreamResponse:
        elapsed = time.perf_counter() - self.started
        HTTP_LATENCY.labels(method=self.route.rpc, status=str(response.status)).observe(elapsed)
        level = log.info if response.status < 400 else log.warning
        level(
            "http call finished",
            status=response.status,
            ms=round(elapsed * 1000, 2),
            detail=detail or None,
        )
        structlog.contextvars.unbind_contextvars("request_id", "rpc")
        return response

    async def fail(self, exc: BaseException, gate: Gate) -> web.StreamResponse:
        if isinstance(exc, PermissionDenied) and not exc.audited:
            try:
                await gate.record_denial(self.route.gate_method, exc)
            except TongbanError as failure:
                exc = failure
        if isinstance(exc, TongbanError):
            problem = problem_for(exc, self.instance)
            return self.finish(problem_response(problem, self.request_id), exc.message)
        log.exception("http call crashed", exc_info=exc)
        problem = _plain_problem(
            500,
            INTERNAL.problem_type,
            INTERNAL.title,
            f"internal error; the hub logged it under request id {self.request_id}",
        )
        return self.finish(problem_response(problem, self.request_id), type(exc).__name__)

    async def stream(
        self, request: web.Request, items: AsyncIterator[Message]
    ) -> web.StreamResponse:
        """Answer with NDJSON. The first item is awaited before the status is sent, so a
        refusal at the start is still a problem response; a failure later in the stream
        ends it with one ``{"error": problem}`` line."""
        iterator = aiter(items)
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            first = None
        response = web.StreamResponse(
            headers={"Content-Type": NDJSON, REQUEST_ID_HEADER: self.request_id}
        )
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(_line(messages.to_json(first)))
                async for item in iterator:
                    await response.write(_line(messages.to_json(item)))
        except TongbanError as exc:
            await response.write(_line({"error": problem_for(exc, self.instance)}))
        except Exception as exc:
            log.exception("http stream crashed", exc_info=exc)
            await response.write(
                _line(
                    {
                        "error": _plain_problem(
                            500,
                            INTERNAL.problem_type,
                            INTERNAL.title,
                            f"internal error; logged under request id {self.request_id}",
                        )
                    }
                )
            )
        await response.write_eof()
        return self.finish(response)


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def api_ssl_context(settings: Settings) -> ssl.SSLContext:
    """HTTPS that requires a client certificate from the hub's client CA (production).

    Raises `ConfigError` naming the setting when a file cannot be read.
    """
    security = settings.security
    files = {
        "tls_cert_file": security.tls_cert_file,
        "tls_key_file": security.tls_key_file,
        "client_ca_file": security.client_ca_file,
    }
    for name, path in files.items():
        if path is None:
            raise ConfigError(f"security.{name}", "required in production mode")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(Path(str(security.tls_cert_file)), Path(str(security.tls_key_file)))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "security.tls_cert_file", f"cannot load the hub's TLS pair: {exc}"
        ) from exc
    try:
        context.load_verify_locations(cafile=str(security.client_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("security.client_ca_file", f"cannot load: {exc}") from exc
    return context


__all__ = ["PREFIX", "ApiApplication", "HttpCallContext", "api_ssl_context"]
