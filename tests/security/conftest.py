"""A hub in production mode: mTLS with certificates from a test CA, policies, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from domain.subjects import KeyKind, parse_key
from exchange.auth.ca import CertificateAuthority, IssuedFiles
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
HALL = "91350100M000100Y43"
AUDIT_OFFICE = "11320100MB2222221J"
PSB = "11320100MB0000000J"
STRANGER = "11320100MB3333337K"
PERSON = "11010519491231002X"

POLICIES = [
    {
        "caller": f"{HALL}/hall-approval",
        "rpcs": ["ExchangeService/*"],
        "record_types": {"population.resident": ["name", "birth_date"]},
        "reasons": ["^企业开办", "^business"],
    },
    {
        "caller": f"{PSB}/*",
        "rpcs": ["AdapterRegistry/*"],
    },
]


@dataclass
class Pki:
    ca: CertificateAuthority
    folder: Path
    server: IssuedFiles
    clients: dict[str, IssuedFiles]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "ca"
    ca = CertificateAuthority.init(folder)
    server = ca.issue_server("hub", ["127.0.0.1", "localhost"], folder)
    clients = {
        "hall": ca.issue_client(HALL, "hall-approval", folder),
        "auditor": ca.issue_client(AUDIT_OFFICE, "audit-office", folder, roles=("auditor",)),
        "citizen": ca.issue_client(
            STRANGER, "citizen-portal", folder, subject_key=parse_key(KeyKind.ID_CARD, PERSON)
        ),
        "psb": ca.issue_client(PSB, "population-registry", folder),
        "stranger": ca.issue_client(STRANGER, "curious-system", folder),
        "revoked": ca.issue_client(HALL, "hall-approval", folder / "revoked"),
        "expired": ca.issue_client(
            HALL,
            "hall-approval",
            folder / "expired",
            days=1,
            not_before=datetime.now(UTC) - timedelta(days=3),
        ),
    }
    ca.revoke(clients["revoked"].serial)
    return Pki(ca, folder, server, clients)


@pytest.fixture
def secure_settings(pki: Pki, database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        EXAMPLE,
        data_dir=str(tmp_path / "data"),
        policies=POLICIES,
        # The registry tests register the demo's python plug-in for the PSB; python is
        # never registrable unless the operator allows it for the department.
        registration={"departments": [{"uscc": PSB, "kinds": ["python"]}]},
        **{
            "database.url": database_url,
            "server.mode": "production",
            "security.tls_cert_file": str(pki.server.certificate),
            "security.tls_key_file": str(pki.server.private_key),
            "security.client_ca_file": str(pki.folder / "ca.crt"),
            "security.crl_file": str(pki.folder / "crl.pem"),
            "security.audit_subject_key": "test-audit-key",
            "security.record_keys": {"k1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
            "security.active_record_key": "k1",
        },
    )


ChannelFor = Callable[[str], grpc.aio.Channel]


@pytest.fixture
async def secure_hub(secure_settings: Settings) -> AsyncIterator[HubServer]:
    server = HubServer(Hub.open(secure_settings), "127.0.0.1:0")
    await server.start()
    yield server
    await server.stop(grace=0.5)


@pytest.fixture
async def channel_for(secure_hub: HubServer, pki: Pki) -> AsyncIterator[ChannelFor]:
    """Opens a channel to the secure hub as one of the test callers (or None: no cert)."""
    opened: list[grpc.aio.Channel] = []
    root = (pki.folder / "ca.crt").read_bytes()

    def open_as(who: str | None) -> grpc.aio.Channel:
        if who is None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
        else:
            files = pki.clients[who]
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root,
                private_key=files.private_key.read_bytes(),
                certificate_chain=files.certificate.read_bytes(),
            )
        channel = grpc.aio.secure_channel(f"localhost:{secure_hub.port}", credentials)
        opened.append(channel)
        return channel

    yield open_as
    for channel in opened:
        await channel.close()


StartSecure = Callable[..., Awaitable[HubServer]]
