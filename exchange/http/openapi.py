"""The OpenAPI 3.1 document of the HTTP API, generated from the route table and the
proto descriptors (never written by hand), and a readable reference page made from it.

Schemas follow the proto3 JSON mapping exactly as `google.protobuf.json_format` reads
and writes it: lowerCamelCase names, enums by name, 64-bit integers as strings (numbers
are accepted too), Timestamp as RFC 3339, Duration as ``"1.5s"``, Struct as an object.
"""

from __future__ import annotations

import html
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from exchange.http import messages
from exchange.http.routes import PREFIX, ROUTES, Route
from exchange.status import ERROR_TABLE, PAYLOAD_TOO_LARGE

TITLE: Final = "Tongban hub HTTP/JSON API"
VERSION: Final = "v1"
_REF: Final = "#/components/schemas/"
_PROBLEM_REF: Final = {"$ref": f"{_REF}Problem"}

_INT32 = (
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
)
_UINT32 = (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)
_INT64 = (
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
)
_WELL_KNOWN: Final[dict[str, dict[str, Any]]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$",
        "description": "seconds with an `s` suffix, e.g. `1.5s`",
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.FieldMask": {"type": "string"},
}


class _Schemas:
    """Collects one component schema per message and enum reached from the routes."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursion stops here
            properties = {f.json_name: self.field(f) for f in descriptor.fields}
            schema: dict[str, Any] = {
                "type": "object",
                "properties": properties,
                "additionalProperties": False,
            }
            oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]
            if oneofs:
                schema["description"] = "; ".join(
                    f"at most one of {', '.join(f.json_name for f in o.fields)}" for o in oneofs
                )
            self.components[name] = schema
        return {"$ref": f"{_REF}{name}"}

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {
                "type": "string",
                "enum": [value.name for value in descriptor.values],
            }
        return {"$ref": f"{_REF}{name}"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.field(message.fields_by_name["value"]),
            }
        single = self.single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "format": "int32", "minimum": 0}
        if kind in _INT64:
            # proto3 JSON writes 64-bit integers as strings and reads either form.
            return {"type": ["string", "integer"], "pattern": "^-?[0-9]{1,20}$", "format": "int64"}
        return {"type": "number"}


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details; `field` and `rule` name what is wrong",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "description": "the gRPC status code's name"},
            "field": {"type": "string"},
            "rule": {"type": "string"},
        },
        "required": ["type", "title", "status"],
    }


def _parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    method = messages.method_of(route)
    path_names = messages.path_parameters(route)
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
        for name in path_names
    ]
    if route.http_method in ("GET", "DELETE"):
        for query in messages.query_fields(method.input_type, path_names):
            schema = schemas.field(query.field)
            parameters.append({"name": query.name, "in": "query", "schema": schema})
    return parameters


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    method = messages.method_of(route)
    response_schema = schemas.message(method.output_type)
    if method.server_streaming:
        item = {
            "anyOf": [
                response_schema,
                {
                    "type": "object",
                    "properties": {"error": _PROBLEM_REF},
                    "required": ["error"],
                },
            ]
        }
        content = {
            "application/x-ndjson": {
                "schema": item,
                "description": "one JSON object a line; a failure mid-stream is an error line",
            }
        }
    elif route.media:
        content = {route.media: {"schema": {"type": "string", "format": "binary"}}}
    else:
        content = {"application/json": {"schema": response_schema}}
    problem = {"application/problem+json": {"schema": _PROBLEM_REF}}
    statuses = sorted({mapping.http for _, mapping in ERROR_TABLE} | {PAYLOAD_TOO_LARGE.http})
    responses: dict[str, Any] = {"200": {"description": "the RPC's answer", "content": content}}
    for status in statuses:
        responses[str(status)] = {"description": "a problem", "content": problem}
    responses["default"] = {"description": "a problem", "content": problem}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary or route.rpc,
        "description": f"Serves the gRPC method `{route.rpc}` (same policy, same audit).",
        "tags": [route.service.rpartition(".")[2]],
        "parameters": _parameters(route, schemas),
        "responses": responses,
    }
    if route.http_method == "POST":
        request_schema = schemas.message(method.input_type)
        media = "application/x-ndjson" if method.client_streaming else "application/json"
        operation["requestBody"] = {
            "required": False,
            "content": {media: {"schema": request_schema}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route in `ROUTES`."""
    schemas = _Schemas()
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(f"{PREFIX}{route.path}", {})[route.http_method.lower()] = _operation(
            route, schemas
        )
    components = dict(sorted(schemas.components.items()))
    components["Problem"] = _problem_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "Every operation serves one `tongban.v1` gRPC method with the same messages "
                "(proto3 JSON mapping), identity, policy and audit. Dev mode: "
                "`Authorization: Bearer <dev token>`; production: HTTPS with a client "
                "certificate from the hub's CA."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "devToken": {"type": "http", "scheme": "bearer"},
                "clientCertificate": {"type": "mutualTLS"},
            },
        },
        "security": [{}, {"devToken": []}, {"clientCertificate": []}],
    }


def _schema_text(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(_REF)
        return f'<a href="#{html.escape(name)}">{html.escape(name.rpartition(".")[2])}</a>'
    if schema.get("type") == "array":
        return f"array of {_schema_text(schema.get('items'))}"
    if "anyOf" in schema:
        return " or ".join(_schema_text(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    text = "/".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    return html.escape(text)


def reference_page(document: dict[str, Any]) -> str:
    """A self-contained HTML reference of `document` (no scripts, no outside assets)."""
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>{html.escape(TITLE)}</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}</style>",
        f"<h1>{html.escape(TITLE)}</h1>",
        f"<p>{html.escape(document['info']['description'])}</p>",
        '<p>Machine-readable: <a href="openapi.json">openapi.json</a> (OpenAPI 3.1).</p>',
        "<h2>Operations</h2>",
    ]
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            parts.append(f"<h3><code>{verb.upper()} {html.escape(path)}</code></h3>")
            parts.append(
                f"<p>{html.escape(operation['summary'])}. "
                f"{html.escape(operation['description'])}</p>"
            )
            parameters = operation.get("parameters") or []
            if parameters:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>type</th></tr>")
                for parameter in parameters:
                    parts.append(
                        f"<tr><td><code>{html.escape(parameter['name'])}</code></td>"
                        f"<td>{parameter['in']}</td><td>{_schema_text(parameter['schema'])}</td></tr>"
                    )
                parts.append("</table>")
            body = operation.get("requestBody")
            if body:
                media, spec = next(iter(body["content"].items()))
                parts.append(f"<p>Body ({html.escape(media)}): {_schema_text(spec['schema'])}</p>")
            media, spec = next(iter(operation["responses"]["200"]["content"].items()))
            parts.append(f"<p>Answer ({html.escape(media)}): {_schema_text(spec['schema'])}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(f'<h3 id="{html.escape(name)}">{html.escape(name)}</h3>')
        if "enum" in schema:
            parts.append(
                "<p>one of "
                + ", ".join(f"<code>{html.escape(v)}</code>" for v in schema["enum"])
                + "</p>"
            )
            continue
        if schema.get("description"):
            parts.append(f"<p>{html.escape(schema['description'])}</p>")
        properties = schema.get("properties") or {}
        if properties:
            parts.append("<table><tr><th>field</th><th>type</th></tr>")
            for field, field_schema in properties.items():
                parts.append(
                    f"<tr><td><code>{html.escape(field)}</code></td><td>{_schema_text(field_schema)}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</html>")
    return "\n".join(parts)


def main() -> None:
    """Write the document to docs/openapi.json (``make openapi``)."""
    import pathlib

    target = pathlib.Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    target.write_text(render(openapi_document()), encoding="utf-8")
    print(f"wrote {target}")


def render(document: dict[str, Any]) -> str:
    """The document as the checked-in file holds it (stable key order, UTF-8)."""
    import json

    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


if __name__ == "__main__":
    main()
