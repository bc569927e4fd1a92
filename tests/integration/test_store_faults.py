"""The hub on a real PostgreSQL whose connections are killed, or refused, mid-run.

Each test gets a database of its own (``tongban_fault_<hex>``) on the server named by
``TONGBAN_TEST_DATABASE_URL``, so that terminating its backends (``pg_terminate_backend``)
and refusing new ones (``ALTER DATABASE … ALLOW_CONNECTIONS false``) touches no other
test's connections and never restarts the server others use. The hub must answer what it
can (UNAVAILABLE, never INTERNAL or UNKNOWN, while the store is gone), say NOT_SERVING
while it is gone and SERVING again after, with no restart, and lose nothing it
acknowledged: every answered lookup has its audit entry, every issued certificate is
there, and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certstore.database import create_engine_for
from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
    exchange_pb2,
    exchange_pb2_grpc,
)
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import load_settings

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("TONGBAN_TEST_DATABASE_URL"),
        reason="store fault tests need PostgreSQL (TONGBAN_TEST_DATABASE_URL)",
    ),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
PERSON = common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_ID_CARD, value="11010519491231002X")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# What a caller may hear while the store is gone: never INTERNAL or UNKNOWN.
STORE_GONE = {grpc.StatusCode.UNAVAILABLE}


@dataclass
class OwnDatabase:
    admin: sa.Engine
    name: str
    url: str

    def terminate_backends(self) -> int:
        """Kill every connection to this database; return how many there were."""
        with self.admin.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            ).scalar_one()
        return int(killed)

    def allow_connections(self, allowed: bool) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {str(allowed).lower()}'
            )


@pytest.fixture
def own_database() -> Iterator[OwnDatabase]:
    # The store's own engine factory, as conftest's: postgresql:// becomes psycopg 3, and
    # the hub's URL below is derived from it.
    admin = create_engine_for(os.environ["TONGBAN_TEST_DATABASE_URL"]).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    name = f"tongban_fault_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield OwnDatabase(admin, name, url)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
async def hub(own_database: OwnDatabase, tmp_path: Path):
    settings = load_settings(EXAMPLE, data_dir=str(tmp_path), **{"database.url": own_database.url})
    server = HubServer(Hub.open(settings), "127.0.0.1:0")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


def lookup(case_id: str) -> exchange_pb2.LookupRequest:
    return exchange_pb2.LookupRequest(
        subject=PERSON, purpose=common_pb2.Purpose(case_id=case_id, reason="故障测试 / fault test")
    )


def issue(request_id: str) -> certificates_pb2.IssueRequest:
    fields = struct_pb2.Struct()
    fields.update(
        {
            "name": "示例公司",
            "legal_representative": "高勇",
            "registered_capital_cny": 100000,
            "established": "2020-01-02",
            "address": "南京市",
        }
    )
    return certificates_pb2.IssueRequest(
        request_id=request_id,
        type_code="11100000000013338W001",
        holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value="91350100M000100Y43"),
        issuer_uscc="11320100MB1111116K",
        fields=fields,
    )


async def health(channel: grpc.aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10
    )
    return int(answer.status)


def logged_case_ids(server: HubServer) -> list[str]:
    return [
        stored.entry.detail["purpose"]["case_id"]
        for stored in server.hub.audit.store.entries()
        if stored.entry.action == "LOOKUP"
    ]


async def test_killed_connections_lose_nothing_that_was_acknowledged(hub, own_database):
    stop = threading.Event()
    kills: list[int] = []

    def keep_killing() -> None:
        while not stop.wait(0.05):
            kills.append(own_database.terminate_backends())

    answered: list[str] = []
    issued: list[str] = []
    refused: set[grpc.StatusCode] = set()
    killer = threading.Thread(target=keep_killing, daemon=True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        exchange = exchange_pb2_grpc.ExchangeServiceStub(channel)
        certificates = certificates_pb2_grpc.CertificateServiceStub(channel)
        killer.start()
        try:
            for n in range(40):
                try:
                    await exchange.Lookup(lookup(f"FAULT-{n}"), timeout=10)
                    answered.append(f"FAULT-{n}")
                except grpc.aio.AioRpcError as exc:
                    refused.add(exc.code())
                try:
                    done = await certificates.Issue(issue(f"fault-issue-{n}"), timeout=10)
                    issued.append(done.certificate.id)
                except grpc.aio.AioRpcError as exc:
                    refused.add(exc.code())
        finally:
            stop.set()
            await asyncio.to_thread(killer.join)
        assert sum(kills) > 0, "no connection was ever killed: the test tested nothing"
        assert refused <= STORE_GONE
        assert answered, "no lookup got through while connections were killed"
        # No restart: the hub serves again and every acknowledged write is there.
        await hub.report_health()
        assert await health(channel) == SERVING
        await exchange.Lookup(lookup("FAULT-after"), timeout=10)
        for certificate_id in issued:
            got = await certificates.Get(
                certificates_pb2.GetRequest(certificate_id=certificate_id), timeout=10
            )
            assert got.certificate.id == certificate_id
    logged = logged_case_ids(hub)
    assert set(answered) | {"FAULT-after"} <= set(logged)
    report = hub.hub.audit.store.verify()
    assert report.intact, report


async def test_health_follows_the_store_and_the_hub_comes_back_without_a_restart(hub, own_database):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        exchange = exchange_pb2_grpc.ExchangeServiceStub(channel)
        await exchange.Lookup(lookup("GONE-before"), timeout=10)
        assert await health(channel) == SERVING

        own_database.allow_connections(False)
        assert own_database.terminate_backends() > 0
        await hub.report_health()
        assert await health(channel) == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await exchange.Lookup(lookup("GONE-during"), timeout=10)
        assert refused.value.code() in STORE_GONE
        # A caller hears that the store is unavailable, not where it lives.
        assert "127.0.0.1" not in (refused.value.details() or "")

        own_database.allow_connections(True)
        await hub.report_health()
        assert await health(channel) == SERVING
        await exchange.Lookup(lookup("GONE-after"), timeout=10)
    logged = logged_case_ids(hub)
    assert {"GONE-before", "GONE-after"} <= set(logged)
    assert "GONE-during" not in logged
