"""The HTTP/JSON API of a real hub (dev mode) on loopback: answers, streams, problems."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from exchange.auth.identity import issue_dev_token
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

from .conftest import EXAMPLE_CONFIG

pytestmark = pytest.mark.postgres

PERSON = {"kind": "KEY_KIND_ID_CARD", "value": "11010519491231002X"}
PURPOSE = {"caseId": "2026-0001", "reason": "企业开办"}
SECRET = "dev-secret-for-tests"
HALL = "91350100M000100Y43"


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings: Settings = load_settings(
        EXAMPLE_CONFIG,
        data_dir=str(tmp_path),
        policies=[
            {
                "caller": f"{HALL}/hall",
                "rpcs": ["ExchangeService/*"],
                "record_types": {"population.resident": ["name"]},
                "reasons": [".*"],
            }
        ],
        **{"database.url": database_url, "security.dev_token_secret": SECRET},
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0", "127.0.0.1:0")
    await server.start()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.web.port}/api/v1", timeout=10
    ) as client:
        yield client
    await server.stop(grace=0.5)


async def test_lookup_answers_the_proto3_json_of_the_lookup_response(api):
    response = await api.post("/lookup", json={"subject": PERSON, "purpose": PURPOSE})
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == PERSON
    assert {s["adapterId"]: s["outcome"] for s in body["sources"]} == {
        "psb.population": "SOURCE_OUTCOME_OK"
    }
    (record,) = body["records"]
    assert record["recordType"] == "population.resident"
    assert record["provenance"]["contentHash"]
    assert response.headers["X-Request-Id"] == body["requestId"]


async def test_a_sent_request_id_is_kept_and_an_unusable_one_replaced(api):
    lookup = {"subject": PERSON, "purpose": PURPOSE}
    kept = await api.post("/lookup", json=lookup, headers={"X-Request-Id": "hall-7.a_b"})
    assert kept.headers["X-Request-Id"] == kept.json()["requestId"] == "hall-7.a_b"
    made = set()
    for sent in ("has spaces", "x" * 65, "a/b"):
        response = await api.post("/lookup", json=lookup, headers={"X-Request-Id": sent})
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
        made.add(response.json()["requestId"])
    assert len(made) == 3


async def test_the_http_answer_carries_a_receipt_the_hub_verifies(api):
    body = (await api.post("/lookup", json={"subject": PERSON, "purpose": PURPOSE})).json()
    assert body["receipt"].count(".") == 2
    checked = await api.post("/receipts/verify", json={"receipt": body["receipt"], "answer": body})
    assert checked.status_code == 200
    assert checked.json()["valid"] is True
    body["records"][0]["fields"]["name"] = "someone else"
    tampered = await api.post("/receipts/verify", json={"receipt": body["receipt"], "answer": body})
    assert tampered.json().get("valid", False) is False
    failed = [c for c in tampered.json()["checks"] if not c.get("passed")]
    assert any("its fields were changed" in c["detail"] for c in failed)
    head = (await api.get("/audit/tree-head", params={"fresh": "true"})).json()
    assert head["treeHead"]["checkpoint"].startswith("tongban/audit\n")


async def test_a_dev_token_is_the_caller_and_its_policy_applies(api):
    token = issue_dev_token(SECRET.encode(), HALL, "hall")
    response = await api.post(
        "/lookup",
        json={"subject": PERSON, "purpose": PURPOSE},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    (record,) = response.json()["records"]
    assert set(record["fields"]) == {"name"}
    forged = await api.post(
        "/lookup",
        json={"subject": PERSON, "purpose": PURPOSE},
        headers={"Authorization": f"Bearer {token[:-2]}xx"},
    )
    assert forged.status_code == 401
    assert forged.json()["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b"{not json", "body", "not well-formed JSON"),
        (b"[1, 2]", "body", "must be a JSON object"),
        (b'{"subject": {"kind": "KEY_KIND_ID_CARD", "value": 5}}', "subject.value", ""),
        (b'{"subject": {"kind": "NO_SUCH_KIND"}}', "subject.kind", "Invalid enum value"),
        (b'{"surprise": true}', "surprise", "unknown field"),
        (b'{"subject": {"kind": "KEY_KIND_ID_CARD", "value": "x"}}', "subject.value", ""),
        (
            json.dumps({"subject": PERSON}).encode(),
            "purpose",
            "every lookup needs a purpose",
        ),
        (
            json.dumps({"subject": PERSON, "purpose": PURPOSE, "maxStaleness": "-5s"}).encode(),
            "max_staleness",
            "must not be negative",
        ),
        # The wire rules of every gRPC request hold over HTTP too (issue 17 §2, §3).
        (
            json.dumps(
                {"subject": PERSON, "purpose": {"caseId": "x\u0000y", "reason": "企业开办"}}
            ).encode(),
            "purpose.case_id",
            "control character U+0000",
        ),
        (
            json.dumps(
                {"subject": PERSON, "purpose": PURPOSE, "maxStaleness": "100000000000s"}
            ).encode(),
            "max_staleness",
            "must be at most",
        ),
    ],
)
async def test_bad_input_is_a_400_problem_naming_the_field(api, body, field, rule):
    response = await api.post("/lookup", content=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:tongban:problem:invalid_argument"
    assert problem["status"] == 400
    assert problem["field"] == field
    assert rule in problem["rule"]
    assert problem["instance"] == "/api/v1/lookup"


async def test_a_body_larger_than_the_message_limit_is_413(api):
    response = await api.post("/lookup", content=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert response.status_code == 413
    assert response.json()["field"] == "body"


async def test_unknown_paths_and_methods_are_problems_too(api):
    missing = await api.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await api.delete("/lookup")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]


async def test_batch_lookup_streams_ndjson_with_each_index(api):
    subjects = [PERSON, {"kind": "KEY_KIND_USCC", "value": "not-a-uscc"}]
    async with api.stream(
        "POST", "/lookup/batch", json={"subjects": subjects, "purpose": PURPOSE}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    by_index = {line.get("index", 0): line for line in lines}
    assert set(by_index) == {0, 1}
    assert by_index[0]["result"]["records"]
    assert by_index[1]["error"]["field"] == "subjects[1].value"


async def test_a_batch_refused_at_the_start_is_a_problem_not_a_stream(api):
    response = await api.post("/lookup/batch", json={"subjects": [], "purpose": PURPOSE})
    assert response.status_code == 400
    assert response.json()["field"] == "subjects"


async def test_get_routes_take_query_parameters_and_path_parameters(api):
    adapters = await api.get("/adapters", params={"recordType": "population.resident"})
    assert [a["spec"]["adapterId"] for a in adapters.json()["adapters"]] == ["psb.population"]
    unknown = await api.get("/adapters", params={"recordtype": "x"})
    assert unknown.status_code == 400
    assert unknown.json()["field"] == "recordtype"
    job = await api.get("/sync-jobs/77")
    assert job.status_code == 404
    assert job.json()["code"] == "NOT_FOUND"
    bad_id = await api.get("/sync-jobs/seventy")
    assert bad_id.json()["field"] == "job_id"
    flag = await api.get(
        "/certificates",
        params={"holder.kind": "KEY_KIND_USCC", "holder.value": HALL, "includeInactive": "yes"},
    )
    assert flag.status_code == 400
    assert flag.json()["field"] == "includeInactive"


async def test_the_openapi_document_and_reference_page_are_served(api):
    document = (await api.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/lookup" in document["paths"]
    page = await api.get("/docs")
    assert page.status_code == 200
    assert "POST /api/v1/lookup" in page.text


async def test_registering_over_http_carries_department_keys(api):
    spec = {
        "adapterId": "county.population",
        "department": "县公安局",
        "departmentUscc": "11320100MB0000000J",
        "kind": "ADAPTER_KIND_HTTP",
        "serves": [{"recordType": "population.resident", "keyKinds": ["KEY_KIND_ID_CARD"]}],
        "settings": {
            "base_url": "http://127.0.0.1:9",
            "fetch": {"path": "/r/{key}"},
            "mappings": [
                {
                    "record_type": "population.resident",
                    "key_kind": "ID_CARD",
                    "key_field": "idNo",
                    "id_field": "recordNo",
                    "field_map": {"name": "xm"},
                }
            ],
        },
        "departmentKeys": [{"kty": "OKP", "crv": "Ed25519", "x": "not-a-key"}],
    }
    bad = await api.post("/adapters", json={"spec": spec})
    assert bad.status_code == 400, bad.text
    assert bad.json()["field"] == "spec.department_keys[0]"
