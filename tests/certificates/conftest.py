"""Fixtures for the e-certificate tests: a certificate library on a real database, and a
real hub server (in process) with the example configuration plus a second type."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

# `--import-mode=importlib` keeps test folders off sys.path; these tests share builders
# through `cert_testkit` (a name no other folder uses), so put this folder back.
sys.path.insert(0, str(Path(__file__).parent))

from cert_testkit import StartServer, settings_for

from certstore import migrate
from certstore.audit import AuditLog
from certstore.database import Database
from exchange.audit import AuditTrail
from exchange.certificates.library import CertificateLibrary
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings


@pytest.fixture
def cert_settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The test settings; parametrize it indirectly with a name from SUITES to run a
    table under the GM suite or with dual-signed licences."""
    suite = getattr(request, "param", "international")
    return settings_for(database_url, tmp_path / "data", suite)


@pytest.fixture
def database(cert_settings: Settings) -> Iterator[Database]:
    migrate.upgrade(cert_settings.database_url)
    db = Database.from_url(cert_settings.database_url)
    yield db
    db.dispose()


@pytest.fixture
def audit_trail(database: Database) -> AuditTrail:
    return AuditTrail(AuditLog(database), b"test-audit-key")


@pytest.fixture
def library(
    cert_settings: Settings, database: Database, audit_trail: AuditTrail
) -> CertificateLibrary:
    """A library on a migrated database, with root and issuer keys generated (dev mode)."""
    return CertificateLibrary.open(cert_settings, database, audit_trail)


@pytest.fixture
async def start_server(cert_settings: Settings) -> AsyncIterator[StartServer]:
    """Starts hub servers on free ports (each on the test's database); stops them after."""
    started: list[HubServer] = []

    async def start(settings: Settings | None = None) -> HubServer:
        server = HubServer(Hub.open(settings or cert_settings), "127.0.0.1:0")
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0.5)


@pytest.fixture
async def hub_server(start_server: StartServer) -> HubServer:
    return await start_server()


@pytest.fixture
async def channel(hub_server: HubServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub_server.port}") as opened:
        yield opened


@pytest.fixture(autouse=True)
def fast_key_encryption(monkeypatch: pytest.MonkeyPatch) -> None:
    """PBKDF2 at 2,000 rounds instead of 600,000: keys are made in nearly every test here.
    The key files still say their round count, so loading works the same; the signing
    tests cover the production figure."""
    monkeypatch.setattr("signing.keys.PBKDF2_ITERATIONS", 2_000)
