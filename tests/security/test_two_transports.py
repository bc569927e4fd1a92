"""One behaviour table, two transports: gRPC and HTTP/JSON answer every row alike.

A production-mode hub (mTLS from a test CA, policies, audit) serves gRPC and the
HTTP/JSON API over HTTPS with client certificates. Each row sends the same request (as
proto3 JSON, parsed into the message for gRPC) as the same caller over each transport
and expects the same outcome: the same status, the same field named, the same records
and fields, the same audit entry. Runs on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from exchange.generated import (
    audit_pb2,
    audit_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings
from exchange.status import ERROR_TABLE

pytestmark = pytest.mark.postgres

PERSON = {"kind": "KEY_KIND_ID_CARD", "value": "11010519491231002X"}
PURPOSE = {"caseId": "2026-0042", "reason": "企业开办: 设立登记"}
HTTP_STATUS = {mapping.grpc.name: mapping.http for _, mapping in ERROR_TABLE}


@dataclass
class Answer:
    code: str  # the gRPC status code's name ("OK" for success), on both transports
    body: dict[str, Any] = field(default_factory=dict)
    field: str = ""  # the request field an INVALID_ARGUMENT names
    detail: str = ""


Call = Callable[[str | None, str, dict[str, Any]], Any]


@pytest.fixture
async def two_transports(secure_settings: Settings) -> AsyncIterator[HubServer]:
    server = HubServer(Hub.open(secure_settings), "127.0.0.1:0", api_listen="127.0.0.1:0")
    await server.start()
    yield server
    await server.stop(grace=0.5)


class GrpcTransport:
    name = "grpc"

    def __init__(self, server: HubServer, pki: Any) -> None:
        self.server, self.pki = server, pki
        self.channels: list[grpc.aio.Channel] = []

    def channel(self, who: str) -> grpc.aio.Channel:
        files = self.pki.clients[who]
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(self.pki.folder / "ca.crt").read_bytes(),
            private_key=files.private_key.read_bytes(),
            certificate_chain=files.certificate.read_bytes(),
        )
        channel = grpc.aio.secure_channel(f"localhost:{self.server.port}", credentials)
        self.channels.append(channel)
        return channel

    async def call(self, who: str, rpc: str, body: dict[str, Any]) -> Answer:
        channel = self.channel(who)
        if rpc == "Lookup":
            stub: Any = exchange_pb2_grpc.ExchangeServiceStub(channel)
            request: Any = json_format.ParseDict(body, exchange_pb2.LookupRequest())
        else:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            request = json_format.ParseDict(body, audit_pb2.ListAccessRequest())
        try:
            response = await getattr(stub, rpc)(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            return Answer(error.code().name, field=_bad_field(error), detail=error.details() or "")
        return Answer("OK", json_format.MessageToDict(response))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def _bad_field(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return bad.field_violations[0].field
    return ""


class HttpTransport:
    name = "http"
    PATHS: ClassVar = {
        "Lookup": ("POST", "/api/v1/lookup"),
        "ListAccess": ("GET", "/api/v1/audit/access"),
    }

    def __init__(self, server: HubServer, pki: Any) -> None:
        self.server, self.pki = server, pki
        self.clients: list[httpx.AsyncClient] = []

    def client(self, who: str) -> httpx.AsyncClient:
        files = self.pki.clients[who]
        context = ssl.create_default_context(cafile=str(self.pki.folder / "ca.crt"))
        context.load_cert_chain(str(files.certificate), str(files.private_key))
        client = httpx.AsyncClient(
            base_url=f"https://localhost:{self.server.api_port}", verify=context, timeout=10
        )
        self.clients.append(client)
        return client

    async def call(self, who: str, rpc: str, body: dict[str, Any]) -> Answer:
        method, path = self.PATHS[rpc]
        client = self.client(who)
        if method == "GET":
            subject = body["subject"]
            params = {"subject.kind": subject["kind"], "subject.value": subject["value"]}
            response = await client.get(path, params=params)
        else:
            response = await client.post(path, json=body)
        payload = response.json()
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("application/json")
            return Answer("OK", payload)
        assert response.headers["content-type"] == "application/problem+json"
        assert HTTP_STATUS[payload["code"]] == response.status_code == payload["status"]
        return Answer(payload["code"], field=payload.get("field", ""), detail=payload["detail"])

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture(params=["grpc", "http"])
async def transport(
    request: pytest.FixtureRequest, two_transports: HubServer, pki: Any
) -> AsyncIterator[GrpcTransport | HttpTransport]:
    chosen = (GrpcTransport if request.param == "grpc" else HttpTransport)(two_transports, pki)
    yield chosen
    await chosen.close()


def _lookup(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": PERSON, "purpose": PURPOSE}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class Row:
    name: str
    who: str
    body: dict[str, Any]
    code: str
    field: str = ""
    says: str = ""
    fields: frozenset[str] | None = None


TABLE = [
    Row(
        "allowed lookup, stripped fields",
        "hall",
        _lookup(),
        "OK",
        fields=frozenset({"name", "birth_date"}),
    ),
    Row(
        "refused record type",
        "hall",
        _lookup(recordTypes=["market.business_license"]),
        "PERMISSION_DENIED",
        says="market.business_license",
    ),
    Row("missing purpose", "hall", _lookup(purpose=None), "INVALID_ARGUMENT", field="purpose"),
    Row(
        "missing case id",
        "hall",
        _lookup(purpose={"reason": "企业开办"}),
        "INVALID_ARGUMENT",
        field="purpose.case_id",
    ),
    Row(
        "bad key",
        "hall",
        _lookup(subject={"kind": "KEY_KIND_ID_CARD", "value": "110105194912310021"}),
        "INVALID_ARGUMENT",
        field="subject.value",
    ),
    Row(
        "unknown record type",
        "hall",
        _lookup(recordTypes=["nope.nothing"]),
        "INVALID_ARGUMENT",
        field="record_types[0]",
    ),
    Row("revoked certificate", "revoked", _lookup(), "UNAUTHENTICATED", says="revoked"),
    Row("no policy: default deny", "stranger", _lookup(), "PERMISSION_DENIED"),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
async def test_behaviour_table(transport: GrpcTransport | HttpTransport, row: Row) -> None:
    answer = await transport.call(row.who, "Lookup", row.body)
    assert answer.code == row.code, answer
    assert answer.field == row.field
    assert row.says in answer.detail
    if row.fields is not None:
        (record,) = answer.body["records"]
        assert set(record["fields"]) == row.fields
        assert record["provenance"]["adapterId"] == "psb.population"


async def test_policy_denial_is_in_the_audit_trail(
    transport: GrpcTransport | HttpTransport,
) -> None:
    case = f"2026-DENY-{transport.name}"
    denied = await transport.call(
        "hall", "Lookup", _lookup(purpose={"caseId": case, "reason": "curiosity"})
    )
    assert denied.code == "PERMISSION_DENIED"
    assert "reason" in denied.detail
    trail = await transport.call("auditor", "ListAccess", {"subject": PERSON})
    assert trail.code == "OK", trail
    entries = [e for e in trail.body["entries"] if e["purpose"].get("caseId") == case]
    assert [e["outcome"] for e in entries] == ["LOOKUP DENIED"]
    assert entries[0]["caller"].startswith("91350100M000100Y43")
    # The subject's own channel may read it too; a stranger may not.
    assert (await transport.call("citizen", "ListAccess", {"subject": PERSON})).code == "OK"
    stranger = await transport.call("stranger", "ListAccess", {"subject": PERSON})
    assert stranger.code == "PERMISSION_DENIED"
