"""The HTTP/JSON transport: `/api/v1` routes over the same servicers as gRPC.

`routes` is the declarative route table (how to add a route is told there), `messages`
turns path, query and body into request messages, `api` serves them with the gate and
RFC 9457 problems, `openapi` generates the OpenAPI 3.1 document and reference page.
Run ``python -m exchange.http.openapi`` (``make openapi``) to refresh docs/openapi.json.
"""
