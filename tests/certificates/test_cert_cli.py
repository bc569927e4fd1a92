"""`tongban cert`, `trust`, `verify` and `keys` as an operator and a verifier use them.

The commands run in a worker thread against a real hub server in this process, on the
test's database; `keys` works on that database directly, as it does in production.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cert_testkit import AMR, COMPANY, EXAMPLE, LICENCE, SUITES, licence_issue
from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from domain.errors import ConfigError, InvalidRequest
from exchange.certificates.documents import (
    CERTIFICATE_ATTACHMENT,
    SECOND_CERTIFICATE_ATTACHMENT,
    embedded_tokens,
)
from exchange.cli import app
from exchange.generated import certificates_pb2_grpc
from exchange.server import HubServer
from exchange.settings import Settings

runner = CliRunner()


async def tongban(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run a `tongban` command off the event loop (the hub answers on it)."""
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


def hub_address(server: HubServer) -> str:
    return f"127.0.0.1:{server.port}"


SUITES_SHOWN = {
    "international": "suites verified: international (EdDSA)",
    "gm": "suites verified: gm (SM3withSM2)",
    "dual": "suites verified: international (EdDSA), gm (SM3withSM2)",
}


@pytest.mark.parametrize("cert_settings", SUITES, indirect=True)
async def test_issue_export_verify_revoke_verify_again(
    hub_server: HubServer, tmp_path: Path, cert_settings: Settings
) -> None:
    suite = _profile(cert_settings)
    hub = hub_address(hub_server)
    token_file = tmp_path / "licence.jws"
    issued = await tongban(
        "cert", "issue", LICENCE, "--holder", f"USCC:{COMPANY}",
        "-f", "name=南京通办科技有限公司", "-f", "legal_representative=张三",
        "-f", "registered_capital_cny:=1000000", "-f", "established=2019-05-20",
        "-f", "address=江苏省南京市玄武区中山路1号",
        "--request-id", "cli-0001", "--token-out", str(token_file), "--hub", hub,
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    certificate_id = issued.output.strip().splitlines()[-1].removeprefix("issued ")
    assert certificate_id.startswith(f"1.2.156.3005.2.{LICENCE}.{AMR}.")

    shown = await tongban("cert", "show", certificate_id, "--hub", hub)
    assert shown.exit_code == 0, shown.output
    assert "营业执照" in shown.output
    assert "VALID" in shown.output

    trust = tmp_path / "trust"
    exported = await tongban("trust", "export", "--out", str(trust), "--hub", hub)
    assert exported.exit_code == 0, exported.output
    assert {p.name for p in trust.iterdir()} == {
        "trust-bundle.jws", "status-list.jws", "root.jwk.json", "jwks.json"
    }  # fmt: skip
    files = [
        "--bundle", str(trust / "trust-bundle.jws"),
        "--status", str(trust / "status-list.jws"),
        "--root", str(trust / "root.jwk.json"),
    ]  # fmt: skip

    tokens = token_file.read_text().split()
    assert len(tokens) == (2 if suite == "dual" else 1)
    valid = await tongban("verify", str(token_file), *files)
    assert valid.exit_code == 0, valid.output
    for check in ("INTEGRITY", "SIGNATURE", "ISSUER_TRUSTED", "KEY_VALID_AT_ISSUE", "STATUS"):
        assert check in valid.output
    assert "VALIDITY_WINDOW" in valid.output
    assert "NOT VALID" not in valid.output
    assert SUITES_SHOWN[suite] in valid.output
    # The PDF document embeds every token (both of a dual-signed certificate) and
    # `verify FILE.pdf` says which suites verified.
    pdf = tmp_path / "licence.pdf"
    rendered = await tongban("cert", "render", certificate_id, "--out", str(pdf), "--hub", hub)
    assert rendered.exit_code == 0, rendered.output
    embedded = embedded_tokens(pdf.read_bytes())
    assert [embedded.certificate, embedded.second_certificate] == (
        tokens if suite == "dual" else [tokens[0], None]
    )
    from_pdf = await tongban("verify", str(pdf), *files)
    assert from_pdf.exit_code == 0, from_pdf.output
    assert SUITES_SHOWN[suite] in from_pdf.output
    if suite == "dual":
        # The second token altered inside the PDF: that suite fails, the first still verifies.
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf.read_bytes())))
        writer._root_object.pop("/Names", None)  # drop the embedded files, then re-add
        writer.add_attachment(CERTIFICATE_ATTACHMENT, tokens[0].encode())
        writer.add_attachment(SECOND_CERTIFICATE_ATTACHMENT, (tokens[1][:-3] + "AAA").encode())
        tampered = tmp_path / "tampered.pdf"
        with tampered.open("wb") as out:
            writer.write(out)
        half = await tongban("verify", str(tampered), *files)
        assert half.exit_code == 0, half.output
        assert "FAILED" in half.output
        assert "suites verified: international (EdDSA)\n" in half.output
    if suite == "dual":
        # One token broken: the other still verifies, and the output says which failed.
        broken = tmp_path / "broken.jws"
        broken.write_text(f"{tokens[0][:-3]}AAA\n{tokens[1]}\n")
        either = await tongban("verify", str(broken), *files)
        assert either.exit_code == 0, either.output
        assert "FAILED" in either.output
        assert "suites verified: gm (SM3withSM2)" in either.output
        by_id = await tongban("verify", certificate_id, "--hub", hub)
        assert by_id.exit_code == 0, by_id.output
        assert SUITES_SHOWN["dual"] in by_id.output

    revoked = await tongban("cert", "revoke", certificate_id, "--reason", "吊销", "--hub", hub)
    assert revoked.exit_code == 0, revoked.output
    assert "REVOKED" in revoked.output

    online = await tongban("verify", certificate_id, "--hub", hub)
    assert online.exit_code == 1
    assert "revoked" in online.output
    # What failed to verify is not shown as a plain certificate card.
    assert online.output.index("claimed, not verified") < online.output.index("holder")

    missing = await tongban("verify", str(tmp_path / "missing.jws"), "--hub", hub)
    assert isinstance(missing.exception, InvalidRequest)
    assert "no such file" in missing.exception.rule

    await tongban("trust", "export", "--out", str(trust), "--hub", hub)
    offline = await tongban("verify", token_file.read_text().strip(), *files)
    assert offline.exit_code == 1
    assert "FAIL" in offline.output
    assert "NOT VALID" in offline.output
    assert "claimed, not verified" in offline.output


def _profile(settings: Settings) -> str:
    if len(settings.type_algorithms(LICENCE)) == 2:
        return "dual"
    return "gm" if settings.crypto.suite == "gm" else "international"


async def test_suspend_reinstate_list_and_qr(hub_server: HubServer, tmp_path: Path) -> None:
    hub = hub_address(hub_server)
    stub = certificates_pb2_grpc.CertificateServiceStub
    import grpc

    async with grpc.aio.insecure_channel(hub) as channel:
        answer = await stub(channel).Issue(licence_issue())
    certificate_id = answer.certificate.id

    suspended = await tongban("cert", "suspend", certificate_id, "--reason", "核查", "--hub", hub)
    assert "SUSPENDED" in suspended.output
    reinstated = await tongban("cert", "reinstate", certificate_id, "--hub", hub)
    assert "VALID" in reinstated.output
    again = await tongban("cert", "reinstate", certificate_id, "--hub", hub)
    assert again.exit_code == 1
    assert "FAILED_PRECONDITION" in str(again.exception)

    listed = await tongban("cert", "list", f"USCC:{COMPANY}", "--hub", hub)
    assert listed.exit_code == 0, listed.output
    assert "营业执照" in listed.output

    png, svg = tmp_path / "licence.png", tmp_path / "licence.svg"
    for out in (png, svg):
        made = await tongban("cert", "qr", certificate_id, "--out", str(out), "--hub", hub)
        assert made.exit_code == 0, made.output
        assert "holds the token" in made.output
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "<svg" in svg.read_text()


async def test_verify_refuses_a_bundle_signed_by_another_root(
    hub_server: HubServer, tmp_path: Path
) -> None:
    hub = hub_address(hub_server)
    trust = tmp_path / "trust"
    await tongban("trust", "export", "--out", str(trust), "--hub", hub)
    import grpc

    async with grpc.aio.insecure_channel(hub) as channel:
        answer = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(licence_issue())
    from signing import generate

    (trust / "root.jwk.json").write_text(json.dumps(generate().public_jwk()))
    refused = await tongban(
        "verify", answer.certificate.token,
        "--bundle", str(trust / "trust-bundle.jws"),
        "--status", str(trust / "status-list.jws"),
        "--root", str(trust / "root.jwk.json"),
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "trust bundle refused" in refused.output


async def test_verify_far_in_the_future_reports_the_expired_bundle(
    hub_server: HubServer, tmp_path: Path
) -> None:
    hub = hub_address(hub_server)
    trust = tmp_path / "trust"
    await tongban("trust", "export", "--out", str(trust), "--hub", hub)
    import grpc

    async with grpc.aio.insecure_channel(hub) as channel:
        answer = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(licence_issue())
    token_file = tmp_path / "token"
    token_file.write_text(answer.certificate.token)
    later = await tongban(
        "verify", str(token_file), "--at", "2099-01-01T00:00:00Z",
        "--bundle", str(trust / "trust-bundle.jws"),
        "--status", str(trust / "status-list.jws"),
        "--root", str(trust / "root.jwk.json"),
    )  # fmt: skip
    assert later.exit_code == 1
    assert "expired" in later.output
    assert "ISSUER_TRUSTED" in later.output


@pytest.fixture
def keys_env(cert_settings: Settings) -> dict[str, str]:
    return {
        "TONGBAN_DATABASE__URL": cert_settings.database_url,
        "TONGBAN_DATA_DIR": str(cert_settings.data_dir),
        "TONGBAN_LOGGING__LEVEL": "ERROR",
        "COLUMNS": "250",  # rich wraps the 43-character key ids in a narrow terminal
    }


async def test_keys_list_rotate_compromise_while_the_hub_runs(
    hub_server: HubServer, keys_env: dict[str, str]
) -> None:
    config = str(EXAMPLE)
    hub = hub_address(hub_server)
    listed = await tongban("keys", "list", "--config", config, env=keys_env)
    assert listed.exit_code == 0, listed.output
    assert "root" in listed.output
    assert AMR in listed.output

    old_kid = hub_server.hub.certificates.keys.ring().active_key(AMR).kid
    rotated = await tongban("keys", "rotate", "--issuer", AMR, "--config", config, env=keys_env)
    assert rotated.exit_code == 0, rotated.output
    assert old_kid in rotated.output

    import grpc

    async with grpc.aio.insecure_channel(hub) as channel:
        answer = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(licence_issue())
    new_kid = hub_server.hub.certificates.keys.ring().active_key(AMR).kid
    assert new_kid != old_kid
    assert json.loads(_header(answer.certificate.token))["kid"] == new_kid

    marked = await tongban(
        "keys", "compromise", new_kid, "--since", "2000-01-01T00:00:00Z",
        "--config", config, env=keys_env,
    )  # fmt: skip
    assert marked.exit_code == 0, marked.output
    assert "1 stored certificates" in marked.output
    assert "replacement" in marked.output

    again = await tongban("keys", "generate", "--root", "--config", config, env=keys_env)
    assert again.exit_code == 1
    assert "root key already" in str(again.exception)
    checked = await tongban("keys", "check", "uscc", AMR)
    assert checked.exit_code == 0


def _header(token: str) -> bytes:
    from signing.base64url import b64url_decode

    return b64url_decode(token.split(".")[0])


@pytest.mark.parametrize(
    ("presented", "says"),
    [
        ("licence.jws", "no such file: licence.jws"),
        ("exports/licence.txt", "no such file: exports/licence.txt"),
        (
            "1.2.156.3005.2.11100000000013338W001.11320100MB1111116K.0IH1M10IJIZXPU40.001.I",
            "a certificate id is verified online: add --hub",
        ),
    ],
)
def test_verify_says_what_it_was_given_when_that_is_no_token(
    presented: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["verify", presented])
    assert isinstance(result.exception, InvalidRequest)
    assert says in result.exception.message
    assert "INTEGRITY" not in result.output


@pytest.mark.parametrize("where", ["a-file", "/proc/no-such-folder/trust"])
async def test_trust_export_to_a_place_it_cannot_write_names_out(
    hub_server: HubServer, tmp_path: Path, where: str
) -> None:
    out = tmp_path / where if where == "a-file" else Path(where)
    if where == "a-file":
        out.write_text("already here")
    done = await tongban("trust", "export", "--out", str(out), "--hub", hub_address(hub_server))
    assert isinstance(done.exception, ConfigError), done.exception
    assert done.exception.setting == "--out"
    assert "cannot write the trust files" in done.exception.rule


async def test_a_qr_code_too_long_for_its_token_links_to_the_configured_public_url(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc

    import exchange.cli.certificates as cli

    hub = hub_address(hub_server)
    async with grpc.aio.insecure_channel(hub) as channel:
        answer = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(licence_issue())
    monkeypatch.setattr(cli, "QR_MAX_TOKEN_LENGTH", 10)  # every token is "too long" now
    config = tmp_path / "hub.toml"
    config.write_text('[signing]\npublic_url = "https://tongban.example.gov.cn"\n')
    out = tmp_path / "qr.png"
    made = await tongban(
        "cert", "qr", answer.certificate.id, "--out", str(out), "--hub", hub,
        "--config", str(config),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "holds the link https://tongban.example.gov.cn/" in made.output
