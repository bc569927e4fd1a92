"""Production mode: only the issuing department may issue; anyone with a certificate verifies.

Callers are identified by mTLS client certificates from a test CA. The policy lets two
organizations call CertificateService; the certificate rule then lets only the one that
issues the type act on it. Refusals are PERMISSION_DENIED naming what was refused, and
they are in the audit trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from cert_testkit import AMR, certificates, licence_issue, rpc_error, settings_for, verification
from typer.testing import CliRunner

from exchange.auth.ca import CertificateAuthority, IssuedFiles
from exchange.cli import app
from exchange.generated import certificates_pb2, verification_pb2
from exchange.hub import Hub
from exchange.server import HubServer

HALL = "91350100M000100Y43"
STRANGER = "11320100MB3333337K"

POLICIES = [
    {"caller": f"{AMR}/licensing", "rpcs": ["CertificateService/*"]},
    {"caller": f"{HALL}/hall-approval", "rpcs": ["CertificateService/*"]},
]


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, IssuedFiles, dict[str, IssuedFiles]]:
    folder = tmp_path / "ca"
    ca = CertificateAuthority.init(folder)
    server = ca.issue_server("hub", ["127.0.0.1", "localhost"], folder)
    clients = {
        "issuer": ca.issue_client(AMR, "licensing", folder / "issuer"),
        "hall": ca.issue_client(HALL, "hall-approval", folder / "hall"),
        "stranger": ca.issue_client(STRANGER, "curious-system", folder / "stranger"),
    }
    return folder, server, clients


@pytest.fixture
async def secure_hub(
    pki: tuple[Path, IssuedFiles, dict[str, IssuedFiles]], database_url: str, tmp_path: Path
) -> AsyncIterator[HubServer]:
    folder, server_files, _ = pki
    passphrase = tmp_path / "signing.passphrase"
    passphrase.write_text("a production passphrase\n")
    passphrase.chmod(0o600)
    settings = settings_for(
        database_url,
        tmp_path / "data",
        policies=POLICIES,
        **{
            "server.mode": "production",
            "security.tls_cert_file": str(server_files.certificate),
            "security.tls_key_file": str(server_files.private_key),
            "security.client_ca_file": str(folder / "ca.crt"),
            "security.audit_subject_key": "test-audit-key",
            "security.encrypt_records": False,
            "signing.passphrase_file": str(passphrase),
            "signing.generate_missing_keys": True,
        },
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0")
    await server.start()
    yield server
    await server.stop(grace=0.5)


@pytest.fixture
async def channel_for(
    secure_hub: HubServer, pki: tuple[Path, IssuedFiles, dict[str, IssuedFiles]]
) -> AsyncIterator[Callable[[str], grpc.aio.Channel]]:
    folder, _, clients = pki
    opened: list[grpc.aio.Channel] = []
    root = (folder / "ca.crt").read_bytes()

    def open_as(who: str) -> grpc.aio.Channel:
        files = clients[who]
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


async def test_only_the_issuing_department_issues_and_revokes(
    channel_for: Callable[[str], grpc.aio.Channel], secure_hub: HubServer
) -> None:
    issuer, hall = channel_for("issuer"), channel_for("hall")

    refused = await rpc_error(certificates(hall).Issue(licence_issue()))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "营业执照" in (refused.details() or "")

    issued = (await certificates(issuer).Issue(licence_issue())).certificate
    read = await certificates(hall).Get(certificates_pb2.GetRequest(certificate_id=issued.id))
    assert read.certificate.token == issued.token

    not_theirs = await rpc_error(
        certificates(hall).Revoke(
            certificates_pb2.RevokeRequest(certificate_id=issued.id, reason="不是我的")
        )
    )
    assert not_theirs.code() == grpc.StatusCode.PERMISSION_DENIED
    assert issued.id in (not_theirs.details() or "")
    await certificates(issuer).Revoke(
        certificates_pb2.RevokeRequest(certificate_id=issued.id, reason="吊销")
    )

    with secure_hub.hub.database.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT caller, action, outcome FROM audit_log ORDER BY sequence")
        ).all()
    denied = [(caller, action) for caller, action, outcome in rows if outcome == "DENIED"]
    assert (f"{HALL}/hall-approval", "CALL") in denied
    assert len(denied) == 2
    assert (f"{AMR}/licensing", "CERT_REVOKE", "OK") in rows


async def test_a_caller_without_policy_may_still_verify(
    channel_for: Callable[[str], grpc.aio.Channel],
) -> None:
    issued = (await certificates(channel_for("issuer")).Issue(licence_issue())).certificate
    stranger = channel_for("stranger")

    refused = await rpc_error(certificates(stranger).Issue(licence_issue()))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    verdict = await verification(stranger).Verify(
        verification_pb2.VerifyRequest(token=issued.token)
    )
    assert verdict.verdict.valid
    bundle = await verification(stranger).GetTrustBundle(verification_pb2.GetTrustBundleRequest())
    assert bundle.trust_bundle


async def test_the_cli_issues_over_mtls(
    secure_hub: HubServer, pki: tuple[Path, IssuedFiles, dict[str, IssuedFiles]]
) -> None:
    folder, _, clients = pki
    tls = [
        "--tls-ca", str(folder / "ca.crt"),
        "--tls-cert", str(clients["issuer"].certificate),
        "--tls-key", str(clients["issuer"].private_key),
        "--hub", f"localhost:{secure_hub.port}",
    ]  # fmt: skip
    command = [
        "cert", "issue", "11100000000013338W001", "--holder", f"USCC:{HALL}",
        "-f", "name=福州通办", "-f", "legal_representative=张三",
        "-f", "registered_capital_cny:=500000", "-f", "established=2020-01-02",
        "-f", "address=福州市鼓楼区", *tls,
    ]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, app, command)
    assert result.exit_code == 0, result.output
    assert "issued 1.2.156.3005.2." in result.output
