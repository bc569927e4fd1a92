"""Proto3 JSON in and out: the request message of a route from its path, query and body.

Everything here reads the protobuf descriptors, so it holds for every RPC in the route
table without per-RPC code. Bad input is always `InvalidRequest` naming the field.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from domain.errors import InvalidRequest

# Imported for their side effect: every tongban.v1 message is in the default pool.
from exchange.generated import (  # noqa: F401
    access_pb2,
    adapters_pb2,
    audit_pb2,
    catalog_pb2,
    certificates_pb2,
    exchange_pb2,
    sync_pb2,
    verification_pb2,
)
from exchange.http.routes import Route
from exchange.services.wire_checks import check_message

# Well-known types whose JSON form is a string (and so may be a query parameter).
STRING_WELL_KNOWN: Final = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
QUERY_DEPTH: Final = 2
_PATH_PARAMETER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_AT = re.compile(r' at "?([A-Za-z_][\w\[\]]*(?:\.[\w\[\]]+)*)')
_NO_FIELD = re.compile(r'has no field named "([^"]{1,80})"')


def method_of(route: Route) -> MethodDescriptor:
    """The RPC's descriptor. Raises KeyError for an RPC no .proto defines (a bug)."""
    service = descriptor_pool.Default().FindServiceByName(route.service)
    return service.methods_by_name[route.method]


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def descriptor_of(cls: type[Message]) -> Descriptor:
    """The descriptor of a generated message class."""
    return cast(Descriptor, cls.DESCRIPTOR)


def path_parameters(route: Route) -> tuple[str, ...]:
    """The request fields named in the route's path, in order."""
    return tuple(_PATH_PARAMETER.findall(route.path))


@dataclass(frozen=True, slots=True)
class QueryField:
    """A request field reachable as one query parameter (``holder.kind``)."""

    name: str  # dotted JSON names: what the caller writes
    path: tuple[FieldDescriptor, ...]

    @property
    def field(self) -> FieldDescriptor:
        return self.path[-1]

    @property
    def repeated(self) -> bool:
        return _is_repeated(self.field)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry


def query_fields(descriptor: Descriptor, skip: Iterable[str] = ()) -> tuple[QueryField, ...]:
    """Fields a GET or DELETE takes as query parameters: scalars, enums, repeated ones,
    string-shaped well-known types, and fields of nested messages (dotted), to a depth."""
    skipped = set(skip)
    found: list[QueryField] = []

    def walk(message: Descriptor, prefix: str, path: tuple[FieldDescriptor, ...]) -> None:
        for field in message.fields:
            if not path and field.name in skipped:
                continue
            name = f"{prefix}{field.json_name}"
            nested = field.message_type
            if nested is None or nested.full_name in STRING_WELL_KNOWN:
                found.append(QueryField(name, (*path, field)))
            elif (
                not _is_repeated(field)
                and not _is_map(field)
                and not nested.full_name.startswith("google.protobuf.")
                and len(path) + 1 < QUERY_DEPTH
            ):
                walk(nested, f"{name}.", (*path, field))

    walk(descriptor, "", ())
    return tuple(found)


def _query_value(field: FieldDescriptor, name: str, text: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text not in ("true", "false"):
            raise InvalidRequest(name, "must be true or false")
        return text == "true"
    return text


def from_query(
    descriptor: Descriptor, query: Iterable[tuple[str, str]], path_values: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON object a GET's query string and path stand for.

    Raises `InvalidRequest` for an unknown parameter, a repeated single one or a bad bool.
    """
    fields = {q.name: q for q in query_fields(descriptor, path_values)}
    by_proto_name = {
        ".".join(f.name for f in q.path): q for q in fields.values() if q.name not in path_values
    }
    data: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_name, text in query:
        spec = fields.get(raw_name) or by_proto_name.get(raw_name)
        if spec is None:
            raise InvalidRequest(raw_name[:80], "not a parameter of this operation")
        value = _query_value(spec.field, spec.name, text)
        target = data
        for parent in spec.path[:-1]:
            target = target.setdefault(parent.json_name, {})
        key = spec.field.json_name
        if spec.repeated:
            target.setdefault(key, []).append(value)
        elif spec.name in seen:
            raise InvalidRequest(spec.name, "given more than once")
        else:
            target[key] = value
        seen.add(spec.name)
    for name, value in path_values.items():
        data[descriptor.fields_by_name[name].json_name] = value
    return data


def from_body(body: bytes, path_values: Mapping[str, str], descriptor: Descriptor) -> Any:
    """The JSON object a POST's body and path stand for (an empty body is ``{}``).

    Raises `InvalidRequest` (``body``) for a body that is not a JSON object.
    """
    if not body.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest("body", f"not well-formed JSON: {str(exc)[:120]}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("body", "must be a JSON object")
    for name, value in path_values.items():
        field = descriptor.fields_by_name[name]
        data.pop(field.name, None)
        data[field.json_name] = value
    return data


def parse(data: Any, cls: type[Message]) -> Message:
    """`data` (a decoded JSON value) as a `cls` message, by the proto3 JSON mapping.

    Raises `InvalidRequest` naming the field for unknown fields and wrong types.
    """
    message = cls()
    try:
        json_format.ParseDict(data, message, max_recursion_depth=32)
    except json_format.ParseError as exc:
        problem = _parse_problem(str(exc), cls.DESCRIPTOR.name)
        if problem.field == "body":
            problem = _wrong_type(data, descriptor_of(cls), "") or problem
        raise problem from exc
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        # json_format raises these bare for some wrong types: find the field ourselves.
        located = _wrong_type(data, descriptor_of(cls), "")
        raise located or InvalidRequest("body", f"not a valid {cls.DESCRIPTOR.name}") from exc
    # The wire rules every gRPC request passes too: no control characters, finite
    # numbers, Timestamps and Durations in range (issue 17 §2, §3).
    check_message(message)
    return message


_JSON_KIND = {
    FieldDescriptor.TYPE_STRING: (str,),
    FieldDescriptor.TYPE_BYTES: (str,),
    FieldDescriptor.TYPE_BOOL: (bool,),
    FieldDescriptor.TYPE_ENUM: (str, int),
    FieldDescriptor.TYPE_DOUBLE: (int, float, str),
    FieldDescriptor.TYPE_FLOAT: (int, float, str),
}


def _wrong_type(data: Any, descriptor: Descriptor, prefix: str) -> InvalidRequest | None:
    """The first field of `data` whose JSON type cannot be `descriptor`'s, if any."""
    if not isinstance(data, dict):
        return InvalidRequest(prefix.rstrip(".") or "body", "must be a JSON object")
    by_name = {f.json_name: f for f in descriptor.fields} | {f.name: f for f in descriptor.fields}
    for key, value in data.items():
        field = by_name.get(key)
        if field is None or value is None:
            continue
        name = f"{prefix}{field.name}"
        values = value if field.is_repeated and isinstance(value, list) else [value]
        if field.is_repeated and not isinstance(value, list | dict):
            return InvalidRequest(name, "must be a JSON array")
        for item in values:
            nested = field.message_type
            if nested is not None:
                if nested.full_name.startswith("google.protobuf."):
                    continue
                if nested.GetOptions().map_entry:
                    continue
                found = _wrong_type(item, nested, f"{name}.")
                if found is not None:
                    return found
                continue
            allowed = _JSON_KIND.get(field.type, (int, str))
            if isinstance(item, bool) and bool not in allowed:
                return InvalidRequest(name, "must not be a boolean")
            if not isinstance(item, allowed):
                kinds = " or ".join(sorted({"string" if k is str else k.__name__ for k in allowed}))
                return InvalidRequest(name, f"must be a JSON {kinds}")
    return None


def _parse_problem(text: str, root: str) -> InvalidRequest:
    """json_format's message as (field, rule): the innermost reason, at its field path."""
    text = text.split("  Available Fields", 1)[0].strip()
    field = "body"
    at = _AT.search(text)
    if at:
        path = at.group(1)
        field = path.removeprefix(root).lstrip(".") if path.startswith(root) else path
        field = field or "body"
    rule = text.rsplit(" field: ", 1)[-1]
    rule = _AT.split(rule, maxsplit=1)[0].strip().rstrip(".") or "not valid here"
    unknown = _NO_FIELD.search(text)
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field != "body" else unknown.group(1)
        rule = "unknown field"
    return InvalidRequest(field, rule[:300])


def to_json(message: Message) -> dict[str, Any]:
    """`message` by the proto3 JSON mapping (lowerCamelCase names, enums by name).

    The same output as `json_format.MessageToDict` (a unit test holds them equal), in a
    fraction of its time: only set fields are visited, with no per-field dispatch tables
    rebuilt per call. Well-known types other than Timestamp and Duration are handed to
    json_format itself.
    """
    encoded: dict[str, Any] = _object(message)
    return encoded


_INT64_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _object(message: Message) -> Any:
    name = message.DESCRIPTOR.full_name
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return message.ToJsonString()  # type: ignore[attr-defined]
    if name == "google.protobuf.Struct":
        return {k: _struct_value(v) for k, v in message.fields.items()}  # type: ignore[attr-defined]
    if name.startswith("google.protobuf."):
        return json_format.MessageToDict(message)
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.json_name] = {str(k): _value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.json_name] = [_value(field, v) for v in value]
        else:
            out[field.json_name] = _value(field, value)
    return out


def _struct_value(value: Any) -> Any:
    """A `google.protobuf.Value` as JSON (numbers stay doubles, as json_format keeps them)."""
    which = value.WhichOneof("kind")
    if which is None or which == "null_value":
        return None
    if which == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValueError("Value.number_value cannot be Infinity or NaN in JSON")
        return number
    if which == "struct_value":
        return {k: _struct_value(v) for k, v in value.struct_value.fields.items()}
    if which == "list_value":
        return [_struct_value(v) for v in value.list_value.values]
    return getattr(value, which)


def _value(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if field.message_type is not None:
        return _object(value)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number.get(value) if field.enum_type else None
        return known.name if known is not None else value
    if kind in _INT64_TYPES:
        return str(value)
    if kind == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if kind == FieldDescriptor.TYPE_FLOAT:
            return type_checkers.ToShortestFloat(value)
    return value
