"""Health says NOT_SERVING when the database or the signing key is unavailable."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.hub import Hub
from exchange.server import SERVICE_NAMES, HubServer
from exchange.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(server: HubServer) -> set[int]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {
            (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status
            for name in ("", *SERVICE_NAMES)
        }


@pytest.fixture
async def sqlite_hub(tmp_path):
    started = []

    async def start(**overrides):
        settings = load_settings(EXAMPLE, data_dir=str(tmp_path), **overrides)
        server = HubServer(Hub.open(settings), "127.0.0.1:0")
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0)


async def test_serving_then_not_when_the_database_goes_away(sqlite_hub, tmp_path):
    server = await sqlite_hub()
    assert await health_of(server) == {SERVING}
    server.hub.database.dispose()
    database = tmp_path / "tongban.db"
    database.rename(tmp_path / "moved.db")
    database.mkdir()  # the path no longer holds a database
    await server.report_health()
    assert await health_of(server) == {NOT_SERVING}


async def test_not_serving_without_a_signing_key(sqlite_hub):
    server = await sqlite_hub(**{"signing.generate_missing_keys": False})
    assert await health_of(server) == {NOT_SERVING}
