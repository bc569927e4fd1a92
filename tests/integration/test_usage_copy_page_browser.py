"""A usage copy (加注件) on the verification page in a real headless browser.

A hall takes a usage copy of a business licence; its QR link (``/u/<token>``) opens the
page, which shows the stamp first ("仅供 … 办理 … 使用，有效期至 …"), the copy's checks
and the certificate's; once the licence is revoked the same link shows the copy
invalid. Screenshots land in test-output/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from exchange.auth.identity import issue_dev_token
from exchange.generated import certificates_pb2, certificates_pb2_grpc, common_pb2
from exchange.settings import Settings, load_settings

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tongban.example.toml"
TYPE = "11100000000013338W001"
COMPANY = "91350100M000100Y43"
HALL = "91320102MA1UXW2B65"
SECRET = "browser-test-secret"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The example configuration, and a hall allowed to use business licences."""
    policy = {"caller": f"{HALL}/window-1", "rpcs": ["*"], "certificate_types": [TYPE]}
    return load_settings(
        EXAMPLE_CONFIG,
        data_dir=str(tmp_path),
        policies=[policy],
        **{"database.url": database_url, "security.dev_token_secret": SECRET},
    )


def _fields() -> struct_pb2.Struct:
    fields = struct_pb2.Struct()
    fields.update(
        {
            "name": "福建示例科技有限公司",
            "legal_representative": "高勇",
            "registered_capital_cny": 3900000,
            "established": "2002-08-10",
            "address": "福州市鼓楼区某路1号",
        }
    )
    return fields


async def test_a_usage_copy_page_shows_the_stamp_and_fails_once_revoked(start_hub, browser_page):
    page = browser_page
    server = await start_hub(http=True)
    base = f"http://127.0.0.1:{server.web.port}"
    hall = (("authorization", f"Bearer {issue_dev_token(SECRET.encode(), HALL, 'window-1')}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = certificates_pb2_grpc.CertificateServiceStub(channel)
        issued = await stub.Issue(
            certificates_pb2.IssueRequest(
                request_id="web-usage-copy",
                type_code=TYPE,
                holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=COMPANY),
                fields=_fields(),
            ),
            timeout=10,
        )
        copy = await stub.IssueUsageCopy(
            certificates_pb2.IssueUsageCopyRequest(
                certificate_id=issued.certificate.id,
                case_id="CASE-2026-0042",
                use_cause="银行开户",
            ),
            metadata=hall,
            timeout=10,
        )
        await page.goto(f"{base}/u/{copy.token}")
        text = await page.inner_text("body")
        assert "加注件有效" in text
        stamp = await page.inner_text(".stamp")
        assert copy.usage_copy.stamp_text in stamp
        assert "福建示例科技有限公司" in text, "verifier_fields of the example type"
        assert "91350100********43" in text
        assert text.count("通过") == 4 + 6, "the copy's four checks and the certificate's six"
        await page.screenshot(path=str(SCREENSHOTS / "usage-copy-valid.png"), full_page=True)

        await stub.Revoke(
            certificates_pb2.RevokeRequest(certificate_id=issued.certificate.id, reason="吊销"),
            timeout=10,
        )
        await page.goto(f"{base}/u/{copy.token}")
        text = await page.inner_text("body")
        assert "加注件无效" in text
        assert "claimed, not verified" in text
        status_row = await page.inner_text("tr:has-text('未被吊销或中止')")
        assert "未通过" in status_row
        await page.screenshot(path=str(SCREENSHOTS / "usage-copy-revoked.png"), full_page=True)
    for name in ("usage-copy-valid.png", "usage-copy-revoked.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
