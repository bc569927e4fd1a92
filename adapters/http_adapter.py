"""The `http` adapter kind: a department's REST/JSON API.

A fetch fills the request template (``{key}`` and ``{key_kind}`` in the path, query
parameters and JSON body) and reads the list of records at `records_path` in the JSON
answer; the mappings turn each object into records. Change streams page through a
changes endpoint: the adapter sends the cursor and the page size as query parameters
and reads the next cursor from the answer.

Outcomes: 404 means the source has nothing on the subject (an empty answer); 429, 502,
503, 504, refused connections and timeouts are retryable `AdapterError`s; other 4xx and
5xx statuses and non-JSON bodies are non-retryable ones. Error messages name the path
template, never a filled-in path, so no identifier reaches a log.

The client never reads proxy settings or certificates from the environment; the
authorization header's value comes from the options (the entry point fills it).
"""

from __future__ import annotations

import asyncio
import json
import re
import string
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final, Literal, Self

import httpcore
import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from adapters.base import (
    Adapter,
    AdapterSpec,
    Change,
    ChangeBatch,
    ChangeKind,
    ConnectGuard,
    Rejection,
)
from adapters.mapping import AdapterOptions, OptionsModel, parse_options, record_matches
from domain.errors import AdapterError, AdapterTimeout
from domain.records import Purpose, SourceRecord
from domain.subjects import SubjectKey

__all__ = ["HttpAdapter", "HttpChangesOptions", "HttpOptions", "HttpRequestTemplate"]

_PLACEHOLDERS: Final = frozenset({"key", "key_kind"})
_RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})


def _placeholders(template: str) -> set[str]:
    """The placeholder names in `template`; only bare ``{name}`` ones are allowed.

    A format spec or conversion (``{key:>100000000}``, ``{key!r}``) would let a
    registration make the hub build huge strings on every lookup (issue 17 §5).
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a template: {exc}") from exc
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(
                "placeholders take no format spec or conversion: write {key} or {key_kind}"
            )
        names.add(name)
    return names


# RFC 9110 §5.1: a field name is a token; §5.5: a value has no CR, LF or NUL.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_HEADER_VALUE_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def _check_header(name: str, value: str, what: str) -> None:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{what} {name[:60]!r} is not an HTTP header name (RFC 9110 token)")
    if _HEADER_VALUE_FORBIDDEN.search(value):
        raise ValueError(f"{what} {name!r}: the value must not contain CR, LF or other controls")


def _check_template(template: str) -> str:
    unknown = sorted(_placeholders(template) - _PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} (only {{key}} and {{key_kind}})")
    return template


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must start with /")
    return _check_template(path)


class HttpRequestTemplate(OptionsModel):
    """The request that fetches one subject's records."""

    method: Literal["GET", "POST"] = "GET"
    path: str
    params: dict[str, str] = Field(default_factory=dict)
    # JSON body for POST; strings in it may hold {key} and {key_kind}.
    body: dict[str, Any] | None = None

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        return _check_path(value)

    @field_validator("params")
    @classmethod
    def _params_shape(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            _check_template(template)
        return value

    @model_validator(mode="after")
    def _names_the_key(self) -> Self:
        if self.body is not None and self.method != "POST":
            raise ValueError("a body needs method POST")
        texts = [self.path, *self.params.values(), *_strings(self.body)]
        for text in _strings(self.body):
            _check_template(text)
        if not any("key" in _placeholders(text) for text in texts):
            raise ValueError("the path, a parameter or the body must hold {key}")
        return self


class HttpChangesOptions(OptionsModel):
    """The changes endpoint: cursor pagination, oldest change first."""

    path: str
    params: dict[str, str] = Field(default_factory=dict)
    cursor_param: str = Field(default="cursor", min_length=1)
    page_size_param: str = Field(default="limit", min_length=1)
    # Dotted paths into the answer; records_path unset means the fetch's records_path.
    records_path: str | None = None
    next_cursor_path: str = Field(default="next_cursor", min_length=1)
    # When set, a false value here ends the stream (else: no records or no next cursor).
    has_more_path: str | None = None

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if _placeholders(value):
            raise ValueError("the changes path takes no placeholders")
        return _check_path(value)


class HttpOptions(AdapterOptions):
    """Options of an `http` adapter."""

    base_url: str
    fetch: HttpRequestTemplate
    # Dotted path of the record list in the fetch answer; "" means the answer itself.
    records_path: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    auth_header: str | None = None
    auth_token: SecretStr | None = None
    changes: HttpChangesOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _signature_beside_each_record(cls, data: Any) -> Any:
        # A department that signs puts its JWS beside each record as "signature" unless
        # the mapping names another field (`signature_field`).
        if isinstance(data, Mapping) and isinstance(data.get("mappings"), list | tuple):
            mappings = [
                {"signature_field": "signature", **m} if isinstance(m, Mapping) else m
                for m in data["mappings"]
            ]
            data = {**data, "mappings": mappings}
        return data

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not url.host:
            raise ValueError("must name a host")
        if url.query or url.fragment:
            raise ValueError("must have no query or fragment")
        return value

    @model_validator(mode="after")
    def _auth_complete(self) -> Self:
        if (self.auth_header is None) != (self.auth_token is None):
            raise ValueError("set auth_header and auth_token together")
        for name, value in self.headers.items():
            _check_header(name, value, "header")
        if self.auth_header is not None and self.auth_token is not None:
            _check_header(self.auth_header, self.auth_token.get_secret_value(), "auth_header")
        if self.auth_header is not None and self.auth_header.lower() in {
            name.lower() for name in self.headers
        }:
            raise ValueError(f"header {self.auth_header!r} is set in both headers and auth_header")
        return self


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only where the guard permits, to the address it checked (no second
    resolution between the check and the connection: DNS rebinding gains nothing)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, guard: ConnectGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            address = await asyncio.to_thread(self._guard.permit, host, port)
        except AdapterError as exc:
            # httpx turns this into ConnectError; the adapter's message stays generic.
            raise httpcore.ConnectError(exc.message) from exc
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable from a registered adapter")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _transport(guard: ConnectGuard | None) -> httpx.AsyncHTTPTransport | None:
    if guard is None:
        return None
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = transport._pool  # httpx 0.28 offers no public hook for the network backend
    pool._network_backend = _GuardedBackend(pool._network_backend, guard)
    return transport


class HttpAdapter(Adapter):
    """Reads a department's REST/JSON API through a request template and mappings."""

    def __init__(self, spec: AdapterSpec) -> None:
        """Raises `InvalidRequest` naming the option when the options are invalid.

        Nothing connects here: the client is made on the first call.
        """
        options = parse_options(HttpOptions, spec.options)
        options.check_serves(spec)
        super().__init__(spec)
        self.options = options
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = dict(self.options.headers)
            if self.options.auth_header is not None and self.options.auth_token is not None:
                headers[self.options.auth_header] = self.options.auth_token.get_secret_value()
            self._client = httpx.AsyncClient(
                base_url=self.options.base_url,
                headers=headers,
                timeout=self.spec.timeout,
                trust_env=False,
                follow_redirects=False,
                transport=_transport(self.spec.guard),
            )
        return self._client

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord | Rejection]:
        chosen = self.options.mappings_for(subject.kind, record_types)
        if not chosen:
            return []
        template = self.options.fetch
        values = {"key": subject.value, "key_kind": subject.kind.value}
        path_values = {name: urllib.parse.quote(v, safe="") for name, v in values.items()}
        request = self.client.build_request(
            template.method,
            template.path.format(**path_values),
            params={name: value.format(**values) for name, value in template.params.items()},
            json=_fill(template.body, values) if template.body is not None else None,
        )
        answer = await self._send(request, template.path)
        if answer is None:
            return []
        items = self._records_at(answer, self.options.records_path, template.path)
        result: list[SourceRecord | Rejection] = []
        for position, item in enumerate(items):
            where = f"item {position}"
            if not isinstance(item, Mapping):
                result.append(Rejection(where, f"not a JSON object but {_json_type(item)}"))
                continue
            for mapping, _ in chosen:
                mapped = mapping.map_row(item, where=where)
                if isinstance(mapped, SourceRecord) and not record_matches(mapped, subject):
                    reason = "the record's key does not name the requested subject"
                    mapped = Rejection(mapped.source_record_id, reason)
                result.append(mapped)
        return result

    async def _changes(self, cursor: str | None, batch_size: int) -> AsyncIterator[ChangeBatch]:
        changes = self.options.changes
        if changes is None:
            raise AdapterError(self.adapter_id, "options.changes is not configured")
        records_path = self.options.records_path
        if changes.records_path is not None:
            records_path = changes.records_path
        while True:
            params = {**changes.params, changes.page_size_param: str(max(1, batch_size))}
            if cursor:
                params[changes.cursor_param] = cursor
            request = self.client.build_request("GET", changes.path, params=params)
            answer = await self._send(request, changes.path)
            if answer is None:
                raise AdapterError(self.adapter_id, f"HTTP 404 from GET {changes.path}")
            items = self._records_at(answer, records_path, changes.path)
            next_cursor = _at(answer, changes.next_cursor_path)
            if next_cursor is not None and not isinstance(next_cursor, str | int):
                raise AdapterError(
                    self.adapter_id, f"{changes.next_cursor_path} is {_json_type(next_cursor)}"
                )
            batch: list[Change] = []
            for position, item in enumerate(items):
                where = f"{cursor or 'start'}+{position}"
                if not isinstance(item, Mapping):
                    reason = f"not a JSON object but {_json_type(item)}"
                    for mapping in self.options.mappings:
                        batch.append(
                            Change(ChangeKind.REJECTED, mapping.record_type, where, reason=reason)
                        )
                    continue
                for mapping in self.options.mappings:
                    batch.append(mapping.map_change(item, where=where))
            more = bool(items) and next_cursor not in (None, "") and str(next_cursor) != cursor
            if changes.has_more_path is not None:
                more = more and bool(_at(answer, changes.has_more_path))
            if next_cursor not in (None, ""):
                cursor = str(next_cursor)
            if batch:
                # Without a next cursor the position stays put: the page is read again
                # next time, and sync jobs upsert idempotently.
                yield ChangeBatch(tuple(batch), cursor or "")
            if not more:
                return

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _send(self, request: httpx.Request, template: str) -> Any:
        """The JSON answer, or None for a 404. Raises `AdapterError` for anything else."""
        described = f"{request.method} {template}"
        try:
            response = await self.client.send(request)
        except httpx.TimeoutException as exc:
            raise AdapterTimeout(self.adapter_id, self.spec.timeout) from exc
        except httpx.TransportError as exc:
            raise AdapterError(
                self.adapter_id, f"{described}: {type(exc).__name__}", retryable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise AdapterError(self.adapter_id, f"{described}: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if not 200 <= response.status_code < 300:
            # Redirects are not followed: a moved API is a configuration matter.
            raise AdapterError(
                self.adapter_id,
                f"HTTP {response.status_code} from {described}",
                retryable=response.status_code in _RETRYABLE_STATUS,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = response.headers.get("content-type", "no content type")
            raise AdapterError(
                self.adapter_id, f"{described} answered {kind}, not JSON: {exc}"
            ) from exc

    def _records_at(self, answer: Any, path: str, template: str) -> list[Any]:
        try:
            found = _at(answer, path, strict=True)
        except KeyError as exc:
            raise AdapterError(
                self.adapter_id, f"the answer to {template} has no {path!r}"
            ) from exc
        if found is None:
            return []
        if isinstance(found, Mapping):
            return [found]
        if isinstance(found, list):
            return found
        raise AdapterError(
            self.adapter_id, f"{path or 'the answer'} of {template} is {_json_type(found)}"
        )


def _at(document: Any, path: str, *, strict: bool = False) -> Any:
    """The value at dotted `path` ("" is the document); None or KeyError when absent."""
    value = document
    for part in path.split(".") if path else ():
        if not isinstance(value, Mapping) or part not in value:
            if strict:
                raise KeyError(path)
            return None
        value = value[part]
    return value


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, Mapping):
        return {name: _fill(v, values) for name, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, Mapping):
        return [text for v in template.values() for text in _strings(v)]
    if isinstance(template, list):
        return [text for v in template for text in _strings(v)]
    return []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
