"""Certificate documents, usage copies (加注件) and holder queries through a real hub.

The hub runs in process on the test's database (SQLite, and PostgreSQL when
configured) with its HTTP port, so QR links are opened on the real verification page.
Callers are dev-token identities: the issuing department, a hall whose policy lets it
use business licences, and a stranger whose policy lets it call but names no
certificate type. PDFs are read with tools Tongban does not use: poppler's pdftotext
and pdftoppm, and zbarimg for the QR code; one rendered page of each kind is kept in
test-output/documents/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from cert_testkit import (
    AMR,
    COMPANY,
    EXAMPLE,
    LICENCE,
    OTHER_COMPANY,
    bad_field,
    certificate_types,
    certificates,
    licence_fields,
    licence_issue,
    rpc_error,
    stamp,
    struct,
    verification,
)

from domain.subjects import KeyKind, parse_key
from exchange.auth.identity import issue_dev_token
from exchange.certificates.documents import (
    CERTIFICATE_ATTACHMENT,
    DocumentContent,
    Row,
    embedded_tokens,
    render_pdf,
)
from exchange.generated import certificates_pb2, verification_pb2
from exchange.hub import Hub
from exchange.server import HubServer
from exchange.settings import load_settings
from signing import PublicKey, StatusList, TrustBundle, Verifier, generate, parse_compact
from signing.usage_copy import TYP_USAGE_COPY, UsageCopy, UsageCopyVerdict, verify_usage_copy

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "documents"
SECRET = "documents-test-dev-token-secret"
HALL = OTHER_COMPANY
STRANGER = "11320100MB3333337K"
POLICIES = [
    {"caller": f"{AMR}/*", "rpcs": ["CertificateService/*", "VerificationService/*"]},
    {
        "caller": f"{HALL}/window-1",
        "rpcs": ["CertificateService/*"],
        "certificate_types": [LICENCE],
        "reasons": ["开户", "企业开办"],
    },
    {"caller": f"{STRANGER}/curious", "rpcs": ["CertificateService/*"]},
]
CAUSE = "银行开户"
CASE = "CASE-2026-0042"
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="poppler-utils (pdftotext, pdftoppm) is not installed; .ci/run installs it",
)
needs_zbar = pytest.mark.skipif(
    shutil.which("zbarimg") is None,
    reason="zbar-tools (zbarimg) is not installed; .ci/run installs it",
)


def _types() -> dict[str, Any]:
    types = certificate_types()
    types[LICENCE] = {
        **types[LICENCE],
        "document": {
            "title": "营业执照",
            "title_en": "Business Licence",
            "field_order": ["name", "legal_representative", "address"],
            "labels": {
                "name": {"zh": "名称", "en": "Name"},
                "legal_representative": {"zh": "法定代表人", "en": "Legal representative"},
                "registered_capital_cny": {"zh": "注册资本（元）", "en": "Registered capital"},
                "address": {"zh": "住所", "en": "Address"},
            },
            "mask_holder": True,
        },
        "verifier_fields": ["name"],
        "usage_copy_validity_days": 30,
    }
    return types


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class World:
    server: HubServer
    channel: grpc.aio.Channel
    public_url: str
    grpc_address: str
    database_url: str

    def as_(self, organization: str, system: str) -> tuple[tuple[str, str]]:
        token = issue_dev_token(SECRET.encode(), organization, system)
        return (("authorization", f"Bearer {token}"),)

    def token_for(self, organization: str, system: str) -> str:
        return issue_dev_token(SECRET.encode(), organization, system)

    @property
    def issuer(self) -> tuple[tuple[str, str]]:
        return self.as_(AMR, "licensing")

    @property
    def hall(self) -> tuple[tuple[str, str]]:
        return self.as_(HALL, "window-1")

    @property
    def stranger(self) -> tuple[tuple[str, str]]:
        return self.as_(STRANGER, "curious")


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        EXAMPLE,
        data_dir=str(tmp_path / "data"),
        certificate_types=_types(),
        policies=POLICIES,
        **{
            "database.url": database_url,
            "http.listen": f"127.0.0.1:{port}",
            "signing.public_url": public_url,
            "security.dev_token_secret": SECRET,
        },
    )
    server = HubServer(Hub.open(settings), "127.0.0.1:0", settings.http.listen)
    await server.start()
    address = f"127.0.0.1:{server.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        yield World(server, channel, public_url, address, database_url)
    await server.stop(grace=0.5)


async def _issue(world: World, **extra: Any) -> certificates_pb2.Certificate:
    answer = await certificates(world.channel).Issue(licence_issue(**extra), metadata=world.issuer)
    return answer.certificate


async def _copy(
    world: World, certificate_id: str, *, include_pdf: bool = False, **extra: Any
) -> certificates_pb2.IssueUsageCopyResponse:
    request = certificates_pb2.IssueUsageCopyRequest(
        certificate_id=certificate_id,
        case_id=extra.pop("case_id", CASE),
        use_cause=extra.pop("use_cause", CAUSE),
        include_pdf=include_pdf,
        **extra,
    )
    return await certificates(world.channel).IssueUsageCopy(request, metadata=world.hall)


@dataclass
class Offline:
    root: PublicKey
    root_jwk: dict[str, Any]
    verifier: Verifier

    def verify(self, copy: str, certificate: str | None, now: datetime | None = None) -> Any:
        return verify_usage_copy(
            copy,
            certificate,
            root=self.root,
            certificate_verifier=self.verifier,
            now=now or datetime.now(UTC),
        )


async def _download(world: World) -> Offline:
    answer = await verification(world.channel).GetTrustBundle(
        verification_pb2.GetTrustBundleRequest()
    )
    root = json.loads(answer.root_public_jwk)
    now = datetime.now(UTC)
    bundle = TrustBundle.load(answer.trust_bundle, root, now)
    status = StatusList.load(answer.status_list, root, now)
    return Offline(PublicKey.from_jwk(root), root, Verifier.from_bundle(bundle, status))


def _names(checks: Any) -> list[str]:
    return [
        verification_pb2.CheckName.Name(c.check).removeprefix("CHECK_NAME_")
        for c in checks
        if not c.passed
    ]


def _offline_failures(verdict: UsageCopyVerdict) -> list[str]:
    own = [f"COPY {c.name.value}" for c in verdict.checks if not c.passed]
    certificate = verdict.certificate
    return own + ([c.name.value for c in certificate.failures] if certificate else [])


def _pdftotext(pdf: Path, *options: str) -> str:
    run = subprocess.run(
        ["pdftotext", *options, str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return run.stdout


def _pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    match = re.search(r"^Pages:\s+(\d+)", info.stdout, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def _first_page_png(pdf: Path, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    prefix = OUTPUT / name
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "150",
            "-png",
            "-singlefile",
            "-f",
            "1",
            "-l",
            "1",
            str(pdf),
            str(prefix),
        ],
        check=True,
    )
    return prefix.with_suffix(".png")


def _qr_text(png: Path) -> str:
    run = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, f"no QR code found in {png}: {run.stderr}"
    return run.stdout.strip()


def _trust_files(trust: Path) -> list[str]:
    """`tongban verify` options naming what `tongban trust export` wrote to `trust`."""
    return [
        *("--bundle", str(trust / "trust-bundle.jws")),
        *("--status", str(trust / "status-list.jws")),
        *("--root", str(trust / "root.jwk.json")),
    ]


def _squeeze(text: str) -> str:
    return "".join(text.split())


# --- certificate documents ---------------------------------------------------------------


@needs_poppler
@needs_zbar
async def test_certificate_pdf_shows_the_certificate_and_its_qr_opens_the_page(
    world: World, tmp_path: Path
) -> None:
    issued = await _issue(world)
    answer = await certificates(world.channel).RenderDocument(
        certificates_pb2.RenderDocumentRequest(certificate_id=issued.id), metadata=world.hall
    )
    assert answer.file_name == f"{issued.id}.pdf"
    pdf = tmp_path / answer.file_name
    pdf.write_bytes(answer.pdf)

    text = _pdftotext(pdf, "-nodiag")
    masked = parse_key(KeyKind.USCC, COMPANY).masked()
    for expected in ("营业执照", "Business Licence", masked, "南京市市场监督管理局", AMR):
        assert expected in text, expected
    assert issued.id in _squeeze(text)
    assert COMPANY not in text, "the holder is printed masked"
    assert "法定代表人" in text, "labels and fields in the type's order"
    assert "张三" in text
    assert text.index("名称") < text.index("法定代表人") < text.index("住所")

    png = _first_page_png(pdf, "certificate")
    link = _qr_text(png)
    assert link == f"{world.public_url}/v/{issued.id}"
    async with httpx.AsyncClient() as client:
        page = await client.get(link)
    assert page.status_code == 200
    assert "证照有效" in page.text
    assert "南京通办科技有限公司" in page.text, "the field marked for verifiers is shown"
    assert "张三" not in page.text, "fields not marked for verifiers are not"


async def test_verify_cli_checks_a_pdf_offline_and_fails_a_tampered_one(
    world: World, tmp_path: Path, tongban_cli: Any
) -> None:
    issued = await _issue(world)
    hall = world.token_for(HALL, "window-1")
    pdf = tmp_path / "licence.pdf"
    rendered = await tongban_cli(
        "cert", "render", issued.id, "--out", str(pdf), "--hub", world.grpc_address,
        "--dev-token", hall,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert embedded_tokens(pdf.read_bytes()).certificate == issued.token

    trust = tmp_path / "trust"
    exported = await tongban_cli(
        "trust", "export", "--out", str(trust), "--hub", world.grpc_address, "--dev-token", hall
    )
    assert exported.returncode == 0, exported.stderr
    files = [
        "--bundle",
        str(trust / "trust-bundle.jws"),
        "--status",
        str(trust / "status-list.jws"),
    ]
    files += ["--root", str(trust / "root.jwk.json")]
    checked = await tongban_cli("verify", str(pdf), *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "VALID" in checked.stdout

    head, payload, signature = issued.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["fields"]["registered_capital_cny"] = 9_000_000
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps(claims, ensure_ascii=False).encode())
        .decode()
        .rstrip("=")
    )
    forged = tmp_path / "forged.pdf"
    content = DocumentContent("营业执照", "", (Row("名称", "Name", "x"),), issued.id, issued.id)
    forged.write_bytes(
        render_pdf(content, [(CERTIFICATE_ATTACHMENT, f"{head}.{forged_payload}.{signature}")])
    )
    refused = await tongban_cli("verify", str(forged), *files)
    assert refused.returncode == 1
    assert "SIGNATURE" in refused.stdout
    assert "NOT VALID" in refused.stdout


# --- usage copies ------------------------------------------------------------------------


@needs_poppler
@needs_zbar
async def test_usage_copy_pdf_is_stamped_on_every_page_and_its_qr_opens_the_page(
    world: World, tmp_path: Path, tongban_cli: Any
) -> None:
    # A long address makes the document run to a second page: the watermark is on both.
    issued = await _issue(world, fields=licence_fields(address="江苏省南京市玄武区中山路1号" * 40))
    answer = await _copy(world, issued.id, include_pdf=True)
    copy = answer.usage_copy
    assert copy.user_organization == HALL
    assert copy.user_system == "window-1"
    assert copy.case_id == CASE
    assert copy.use_cause == CAUSE
    assert copy.stamp_text.startswith(f"仅供 {HALL}/window-1 办理 {CAUSE}（{CASE}）使用，有效期至 ")
    pdf = tmp_path / answer.file_name
    pdf.write_bytes(answer.pdf)
    tokens = embedded_tokens(answer.pdf)
    assert (tokens.usage_copy, tokens.certificate) == (answer.token, issued.token)

    text = _pdftotext(pdf, "-nodiag")
    assert "营业执照（加注件）" in text
    assert parse_key(KeyKind.USCC, COMPANY).masked() in text
    assert "南京市市场监督管理局" in text
    assert issued.id in _squeeze(text)
    assert _squeeze(copy.stamp_text) in _squeeze(text), "the stamp in the banner"
    pages = _pages(pdf)
    assert pages >= 2
    for page in range(1, pages + 1):
        raw = _pdftotext(pdf, "-raw", "-f", str(page), "-l", str(page))
        assert _squeeze(copy.stamp_text) in _squeeze(raw), f"watermark on page {page}"

    link = _qr_text(_first_page_png(pdf, "usage-copy"))
    assert link == f"{world.public_url}/u/{answer.token}"
    async with httpx.AsyncClient() as client:
        page_text = (await client.get(link)).text
    assert "加注件有效" in page_text
    assert copy.stamp_text in page_text
    assert "南京通办科技有限公司" in page_text
    async with httpx.AsyncClient() as client:
        forged = await client.get(f"{world.public_url}/u/{_tamper(answer.token)}")
        garbage = await client.get(f"{world.public_url}/u/abc.def.ghi")
        huge = await client.get(f"{world.public_url}/u/{'A' * 30_000}.b.c")
    assert forged.status_code == 200
    assert "加注件无效" in forged.text
    assert "claimed, not verified" in forged.text
    assert garbage.status_code == 200
    assert "加注件无效" in garbage.text
    assert huge.status_code in (400, 413, 414), "refused, never a server error"

    trust = tmp_path / "trust"
    hall = world.token_for(HALL, "window-1")
    export = ["trust", "export", "--out", str(trust), "--hub", world.grpc_address]
    assert (await tongban_cli(*export, "--dev-token", hall)).returncode == 0
    files = [
        "--bundle",
        str(trust / "trust-bundle.jws"),
        "--status",
        str(trust / "status-list.jws"),
    ]
    files += ["--root", str(trust / "root.jwk.json")]
    checked = await tongban_cli("verify", str(pdf), *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "仅供" in checked.stdout
    online = await tongban_cli("verify", link, "--hub", world.grpc_address, "--dev-token", hall)
    assert online.returncode == 0, online.stdout + online.stderr

    await certificates(world.channel).Revoke(
        certificates_pb2.RevokeRequest(certificate_id=issued.id, reason="吊销"),
        metadata=world.issuer,
    )
    assert (await tongban_cli(*export, "--dev-token", hall)).returncode == 0
    refused = await tongban_cli("verify", str(pdf), *files)
    assert refused.returncode == 1
    assert "STATUS" in refused.stdout
    assert "NOT VALID" in refused.stdout


async def _revoke(world: World, certificate_id: str) -> None:
    await certificates(world.channel).Revoke(
        certificates_pb2.RevokeRequest(certificate_id=certificate_id, reason="吊销营业执照"),
        metadata=world.issuer,
    )


async def _suspend(world: World, certificate_id: str) -> None:
    await certificates(world.channel).Suspend(
        certificates_pb2.SuspendRequest(certificate_id=certificate_id, reason="责令停业整顿"),
        metadata=world.issuer,
    )


async def _supersede(world: World, certificate_id: str) -> None:
    await certificates(world.channel).Supersede(
        certificates_pb2.SupersedeRequest(
            certificate_id=certificate_id,
            request_id=uuid.uuid4().hex,
            fields=struct(licence_fields(address="江苏省南京市鼓楼区新址2号")),
        ),
        metadata=world.issuer,
    )


def _tamper(token: str) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["use_cause"] = "不动产抵押登记"
    changed = base64.urlsafe_b64encode(
        json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode()
    )
    return f"{head}.{changed.decode().rstrip('=')}.{signature}"


# Nothing is concluded from a copy whose signature failed: its other checks are not run.
UNSIGNED = ["COPY SIGNATURE", "COPY CERTIFICATE_MATCH", "COPY VALIDITY_WINDOW"]
# scenario -> (failed checks online, failed checks offline)
USAGE_COPY_TABLE = {
    "valid": ([], []),
    # A one-day copy verified 25 hours on (the status list is fresh for 48 hours).
    "expired (offline: a 1-day copy 25 hours on)": (None, ["COPY VALIDITY_WINDOW"]),
    "underlying certificate revoked": (["STATUS"], ["STATUS"]),
    "underlying certificate suspended": (["STATUS"], ["STATUS"]),
    "underlying certificate superseded": (["STATUS"], ["STATUS"]),
    # Refused a copy, it makes its own: not signed by the hub root key.
    "caller without read rights": (UNSIGNED, UNSIGNED),
    "copy tampered": (UNSIGNED, UNSIGNED),
    "copy shown with another certificate": (["COPY CERTIFICATE_MATCH"], ["COPY CERTIFICATE_MATCH"]),
}


@pytest.mark.parametrize("scenario", list(USAGE_COPY_TABLE))
async def test_usage_copy_table_online_and_offline(world: World, scenario: str) -> None:
    issued = await _issue(world)
    days = 1 if scenario.startswith("expired") else 0
    answer = await _copy(world, issued.id, validity_days=days)
    copy_token, certificate_token = answer.token, answer.certificate_token
    assert certificate_token == issued.token
    if scenario == "underlying certificate revoked":
        await _revoke(world, issued.id)
    elif scenario == "underlying certificate suspended":
        await _suspend(world, issued.id)
    elif scenario == "underlying certificate superseded":
        await _supersede(world, issued.id)
    elif scenario == "copy tampered":
        copy_token = _tamper(copy_token)
    elif scenario == "caller without read rights":
        refused = await rpc_error(
            certificates(world.channel).IssueUsageCopy(
                certificates_pb2.IssueUsageCopyRequest(
                    certificate_id=issued.id, case_id=CASE, use_cause=CAUSE
                ),
                metadata=world.stranger,
            )
        )
        assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
        claims = UsageCopy.from_claims(parse_compact(copy_token, typ=TYP_USAGE_COPY).claims())
        copy_token = replace(claims, user_organization=STRANGER, user_system="curious").sign(
            generate()
        )
    elif scenario == "copy shown with another certificate":
        certificate_token = (await _issue(world)).token
    # Read the clock after every certificate of the scenario is issued: one issued
    # within the same second must not look not-yet-valid to the offline check.
    now = datetime.now(UTC)
    if scenario.startswith("expired"):
        now += timedelta(hours=25)
    want_online, want_offline = USAGE_COPY_TABLE[scenario]

    if want_online is not None:
        request = verification_pb2.VerifyRequest(usage_copy=copy_token)
        if scenario == "copy shown with another certificate":
            request.certificate_token = certificate_token
        verdict = (await verification(world.channel).Verify(request)).verdict
        failed = [f"COPY {n}" for n in _names(verdict.usage_copy_checks)] + _names(verdict.checks)
        assert failed == want_online, [c.reason for c in verdict.usage_copy_checks]
        assert verdict.valid is (not want_online)
        assert verdict.usage_copy.case_id == CASE, "what the copy states, claimed or not"

    offline = await _download(world)
    result = offline.verify(copy_token, certificate_token, now)
    assert _offline_failures(result) == want_offline, result.reasons
    assert result.valid is (not want_offline)


async def test_an_expired_usage_copy_fails_online(world: World) -> None:
    """A copy never outlasts its certificate: one expiring in two seconds takes the copy
    with it (both windows fail once it has passed)."""
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    issued = await _issue(world, valid_until=stamp(soon))
    answer = await _copy(world, issued.id)
    assert answer.usage_copy.valid_until.seconds == int(soon.timestamp())
    await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 1.5)
    verdict = (
        await verification(world.channel).Verify(
            verification_pb2.VerifyRequest(usage_copy=answer.token)
        )
    ).verdict
    assert not verdict.valid
    assert _names(verdict.usage_copy_checks) == ["VALIDITY_WINDOW"]
    assert _names(verdict.checks) == ["VALIDITY_WINDOW"]


async def test_usage_copies_are_refused_with_the_right_codes(world: World) -> None:
    issued = await _issue(world)
    stub = certificates(world.channel)

    def ask(**fields: Any) -> certificates_pb2.IssueUsageCopyRequest:
        values = {"certificate_id": issued.id, "case_id": CASE, "use_cause": CAUSE, **fields}
        return certificates_pb2.IssueUsageCopyRequest(**values)

    error = await rpc_error(stub.IssueUsageCopy(ask(), metadata=world.stranger))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert LICENCE in (error.details() or "")
    error = await rpc_error(stub.IssueUsageCopy(ask()))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED, "a copy must name its user"
    error = await rpc_error(stub.IssueUsageCopy(ask(use_cause=""), metadata=world.hall))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field(error) == "use_cause"
    error = await rpc_error(stub.IssueUsageCopy(ask(case_id=" "), metadata=world.hall))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field(error) == "case_id"
    error = await rpc_error(stub.IssueUsageCopy(ask(validity_days=31), metadata=world.hall))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field(error) == "validity_days"
    error = await rpc_error(
        stub.IssueUsageCopy(ask(use_cause="不动产抵押登记"), metadata=world.hall)
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED, "the policy allows other causes"
    error = await rpc_error(stub.IssueUsageCopy(ask(certificate_id="1.2.3"), metadata=world.hall))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field(error) == "certificate_id"
    await _revoke(world, issued.id)
    error = await rpc_error(stub.IssueUsageCopy(ask(), metadata=world.hall))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "revoked" in (error.details() or "")
    error = await rpc_error(
        stub.RenderDocument(
            certificates_pb2.RenderDocumentRequest(certificate_id=issued.id),
            metadata=world.stranger,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_usage_copy_is_short_when_asked_and_audited_as_a_use(world: World) -> None:
    issued = await _issue(world)
    answer = await _copy(world, issued.id, validity_days=7)
    copy = answer.usage_copy
    assert copy.valid_until.seconds - copy.issued_at.seconds == 7 * 86400
    engine = sa.create_engine(world.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT caller, action, detail FROM audit_log WHERE action = 'CERT_USE'")
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    caller, _, detail = rows[0]
    detail = detail if isinstance(detail, dict) else json.loads(detail)
    assert caller == f"{HALL}/window-1"
    assert detail["certificate_id"] == issued.id
    assert detail["usage_copy_id"] == copy.usage_copy_id
    assert detail["purpose"] == {"case_id": CASE, "reason": CAUSE}


# --- holder queries ----------------------------------------------------------------------


async def test_holder_query_in_the_national_terms_then_a_usage_copy(world: World) -> None:
    kept = await _issue(world)
    gone = await _issue(world)
    await _revoke(world, gone.id)
    stub = certificates(world.channel)

    def query(**fields: Any) -> certificates_pb2.QueryByHolderRequest:
        values = {
            "holder_code": COMPANY,
            "holder_type_code": "001",
            "use_cause": CAUSE,
            "case_id": CASE,
            **fields,
        }
        return certificates_pb2.QueryByHolderRequest(**values)

    found = await stub.QueryByHolder(query(), metadata=world.hall)
    assert [c.id for c in found.certificates] == [kept.id], "only valid ones"
    listed = found.certificates[0]
    assert listed.token == "", "no bare certificate: a hall obtains a usage copy"
    assert not listed.fields
    assert listed.type_name == "营业执照"
    lowercase = await stub.QueryByHolder(query(holder_code=COMPANY.lower()), metadata=world.hall)
    assert [c.id for c in lowercase.certificates] == [kept.id], "the code is normalized"

    nothing = await stub.QueryByHolder(query(), metadata=world.stranger)
    assert list(nothing.certificates) == [], "a caller that may use no licence finds none"

    for fields, field in (
        ({"use_cause": ""}, "use_cause"),
        ({"holder_type_code": ""}, "holder_type_code"),
        ({"holder_type_code": "414"}, "holder_type_code"),
        ({"holder_type_code": "777"}, "holder_type_code"),
        ({"holder_code": "91350100M000100Y44"}, "holder_code"),
        ({"holder_type_code": "111"}, "holder_code"),
    ):
        error = await rpc_error(stub.QueryByHolder(query(**fields), metadata=world.hall))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, fields
        assert bad_field(error) == field, fields
    error = await rpc_error(stub.QueryByHolder(query(use_cause="离婚登记"), metadata=world.hall))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    answer = await _copy(world, listed.id)
    assert answer.usage_copy.certificate_id == kept.id


async def test_verify_stream_takes_usage_copies_beside_certificates(world: World) -> None:
    issued = await _issue(world)
    answer = await _copy(world, issued.id)

    async def requests() -> AsyncIterator[verification_pb2.VerifyStreamRequest]:
        yield verification_pb2.VerifyStreamRequest(correlation_id="copy", usage_copy=answer.token)
        yield verification_pb2.VerifyStreamRequest(correlation_id="cert", token=issued.token)
        yield verification_pb2.VerifyStreamRequest(
            correlation_id="forged", usage_copy=_tamper(answer.token)
        )
        yield verification_pb2.VerifyStreamRequest(
            correlation_id="mixed", token=issued.token, certificate_token=issued.token
        )

    seen = {}
    async for item in verification(world.channel).VerifyStream(requests()):
        seen[item.correlation_id] = item
    assert seen["copy"].verdict.valid
    assert seen["copy"].verdict.usage_copy.use_cause == CAUSE
    assert len(seen["copy"].verdict.usage_copy_checks) == 4
    assert seen["cert"].verdict.valid
    assert not seen["cert"].verdict.HasField("usage_copy")
    assert not seen["forged"].verdict.valid
    assert "certificate_token" in seen["mixed"].error


async def test_verify_cli_takes_a_copy_token_with_its_certificate(
    world: World, tmp_path: Path, tongban_cli: Any
) -> None:
    issued = await _issue(world)
    answer = await _copy(world, issued.id)
    copy_file, certificate_file = tmp_path / "copy.jws", tmp_path / "licence.jws"
    copy_file.write_text(answer.token + "\n")
    certificate_file.write_text(answer.certificate_token + "\n")
    trust = tmp_path / "trust"
    hall = world.token_for(HALL, "window-1")
    export = ["trust", "export", "--out", str(trust), "--hub", world.grpc_address]
    assert (await tongban_cli(*export, "--dev-token", hall)).returncode == 0

    alone = await tongban_cli("verify", str(copy_file), *_trust_files(trust))
    assert alone.returncode == 1
    assert "--certificate" in alone.stdout
    paired = await tongban_cli(
        "verify", str(copy_file), "--certificate", str(certificate_file), *_trust_files(trust)
    )
    assert paired.returncode == 0, paired.stdout + paired.stderr
    assert "CERTIFICATE_MATCH" in paired.stdout
    wrong = await tongban_cli(
        "verify", str(certificate_file), "--certificate", str(certificate_file)
    )
    assert wrong.returncode == 1
    assert "--certificate: is given only with a usage copy" in wrong.stderr
    assert "Traceback" not in wrong.stderr


async def test_the_http_api_downloads_documents_and_usage_copies(world: World) -> None:
    """The same capabilities over HTTP/JSON (served on the HTTP port in dev mode), with
    the same identity and policy: PDFs as application/pdf, the rest as proto3 JSON, whose
    names for the holder query are the national interface's."""
    issued = await _issue(world)
    hall = {"Authorization": f"Bearer {world.token_for(HALL, 'window-1')}"}
    stranger = {"Authorization": f"Bearer {world.token_for(STRANGER, 'curious')}"}
    async with httpx.AsyncClient(base_url=f"{world.public_url}/api/v1") as client:
        document = await client.get(f"/certificates/{issued.id}.pdf", headers=hall)
        assert document.status_code == 200, document.text
        assert document.headers["content-type"] == "application/pdf"
        assert f'filename="{issued.id}.pdf"' in document.headers["content-disposition"]
        assert embedded_tokens(document.content).certificate == issued.token
        refused = await client.get(f"/certificates/{issued.id}.pdf", headers=stranger)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"

        national = {"holderCode": COMPANY, "holderTypeCode": "001", "useCause": CAUSE}
        found = await client.get("/holder-certificates", params=national, headers=hall)
        assert found.status_code == 200, found.text
        assert [c["id"] for c in found.json()["certificates"]] == [issued.id]
        no_cause = await client.get(
            "/holder-certificates", params={**national, "useCause": ""}, headers=hall
        )
        assert no_cause.status_code == 400
        assert "use_cause" in no_cause.text

        ask = {"caseId": CASE, "useCause": CAUSE}
        copy_pdf = await client.post(
            f"/certificates/{issued.id}/usage-copy.pdf", json=ask, headers=hall
        )
        assert copy_pdf.status_code == 200, copy_pdf.text
        assert copy_pdf.headers["content-type"] == "application/pdf"
        tokens = embedded_tokens(copy_pdf.content)
        assert tokens.certificate == issued.token
        assert tokens.usage_copy is not None

        copy = await client.post(f"/certificates/{issued.id}/usage-copies", json=ask, headers=hall)
        assert copy.status_code == 200, copy.text
        assert copy.json()["usageCopy"]["stampText"].startswith(f"仅供 {HALL}/window-1 办理")
        verdict = await client.post("/verify", json={"usageCopy": tokens.usage_copy}, headers=hall)
        assert verdict.status_code == 200, verdict.text
        assert verdict.json()["verdict"]["valid"] is True
        assert len(verdict.json()["verdict"]["usageCopyChecks"]) == 4


async def test_cli_holder_query_then_usage_copy(
    world: World, tmp_path: Path, tongban_cli: Any
) -> None:
    issued = await _issue(world)
    hub = ["--hub", world.grpc_address, "--dev-token", world.token_for(HALL, "window-1")]
    found = await tongban_cli(
        "cert", "holder-query", "--holder-code", COMPANY, "--holder-type-code", "001",
        "--use-cause", CAUSE, *hub,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert issued.id in found.stdout
    refused = await tongban_cli(
        "cert", "holder-query", "--holder-code", COMPANY, "--holder-type-code", "414",
        "--use-cause", CAUSE, *hub,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "holder_type_code" in refused.stderr
    assert "Traceback" not in refused.stderr

    pdf, token = tmp_path / "copy.pdf", tmp_path / "copy.jws"
    made = await tongban_cli(
        "cert", "usage-copy", issued.id, "--case-id", CASE, "--use-cause", CAUSE,
        "--days", "3", "--out", str(pdf), "--token-out", str(token), *hub,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert f"仅供 {HALL}/window-1 办理 {CAUSE}（{CASE}）使用" in made.stdout
    tokens = embedded_tokens(pdf.read_bytes())
    assert tokens.usage_copy == token.read_text().strip()
