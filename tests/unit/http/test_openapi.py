"""The OpenAPI document is generated, complete, valid, and the checked-in copy is current."""

from __future__ import annotations

from pathlib import Path

from exchange.http import messages
from exchange.http.openapi import openapi_document, render
from exchange.http.routes import PREFIX, ROUTES

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_checked_in_document_matches_the_generated_one() -> None:
    # Fails when a route or a .proto changed without `make openapi`.
    assert CHECKED_IN.read_text(encoding="utf-8") == render(openapi_document()), (
        "docs/openapi.json is out of date: run `make openapi`"
    )


def test_every_route_is_documented_with_its_rpc_and_every_ref_resolves() -> None:
    document = openapi_document()
    for route in ROUTES:
        operation = document["paths"][f"{PREFIX}{route.path}"][route.http_method.lower()]
        assert route.rpc in operation["description"]
        for name in messages.path_parameters(route):
            method = messages.method_of(route)
            assert name in method.input_type.fields_by_name, (route, name)
    schemas = document["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [str(node["$ref"])] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_the_document_follows_the_proto3_json_mapping() -> None:
    # Its validity as OpenAPI 3.1 is checked by schemathesis loading it (test_http_fuzz).
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    for name in document["components"]["schemas"]:
        assert name.replace(".", "").replace("_", "").isalnum()
    timestamp = document["components"]["schemas"]["tongban.v1.Provenance"]["properties"]
    assert timestamp["fetchedAt"] == {"type": "string", "format": "date-time"}
    lookup = document["components"]["schemas"]["tongban.v1.LookupRequest"]
    assert set(lookup["properties"]) >= {"subject", "recordTypes", "purpose", "maxStaleness"}
    assert lookup["additionalProperties"] is False


def test_every_rpc_a_hall_verifier_or_operator_uses_has_a_route() -> None:
    served = {route.rpc for route in ROUTES}
    for service in (
        "ExchangeService",
        "CertificateService",
        "VerificationService",
        "AdapterRegistry",
        "SyncService",
        "AuditService",
        "CatalogService",
        "AccessService",
    ):
        from google.protobuf import descriptor_pool

        descriptor = descriptor_pool.Default().FindServiceByName(f"tongban.v1.{service}")
        for method in descriptor.methods:
            assert f"tongban.v1.{service}/{method.name}" in served
