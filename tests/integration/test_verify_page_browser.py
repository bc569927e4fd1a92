"""The verification page in a real headless browser: valid, tampered, revoked.

A screenshot of each lands in test-output/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from exchange.generated import (
    certificates_pb2,
    certificates_pb2_grpc,
    common_pb2,
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

TYPE = "11100000000013338W001"
ISSUER = "11320100MB1111116K"
COMPANY = "91350100M000100Y43"


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


async def _issue(channel: grpc.aio.Channel, request_id: str) -> certificates_pb2.Certificate:
    answer = await certificates_pb2_grpc.CertificateServiceStub(channel).Issue(
        certificates_pb2.IssueRequest(
            request_id=request_id,
            type_code=TYPE,
            holder=common_pb2.SubjectKey(kind=common_pb2.KEY_KIND_USCC, value=COMPANY),
            issuer_uscc=ISSUER,
            fields=_fields(),
        ),
        timeout=10,
    )
    return answer.certificate


async def test_valid_tampered_and_revoked_certificates_in_a_browser(start_hub, browser_page):
    page = browser_page
    server = await start_hub(http=True)
    base = f"http://127.0.0.1:{server.web.port}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        valid = await _issue(channel, "web-valid")
        revoked = await _issue(channel, "web-revoked")
        await certificates_pb2_grpc.CertificateServiceStub(channel).Revoke(
            certificates_pb2.RevokeRequest(certificate_id=revoked.id, reason="吊销营业执照"),
            timeout=10,
        )

    await page.goto(f"{base}/v/{valid.id}")
    text = await page.inner_text("body")
    assert "证照有效" in text
    assert "Valid certificate" in text
    assert "营业执照" in text
    assert "91350100********43" in text
    assert COMPANY not in text  # the holder is shown masked only
    assert text.count("通过") == 6
    await page.screenshot(path=str(SCREENSHOTS / "verify-valid.png"), full_page=True)

    await page.goto(base + "/")
    middle = len(valid.token) // 2
    flipped = "A" if valid.token[middle] != "A" else "B"
    tampered = valid.token[:middle] + flipped + valid.token[middle + 1 :]
    await page.fill("textarea[name=token]", tampered)
    await page.click("button[type=submit]")
    text = await page.inner_text("body")
    assert "证照无效" in text
    assert "NOT valid" in text
    assert "未通过" in text
    await page.screenshot(path=str(SCREENSHOTS / "verify-tampered.png"), full_page=True)

    await page.goto(f"{base}/v/{revoked.id}")
    text = await page.inner_text("body")
    assert "证照已吊销" in text  # says what happened, not only 证照无效
    assert "声明内容，未经验证" in text  # a Chinese-only reader is told too
    status_row = await page.inner_text("tr:has-text('未被吊销或中止')")
    assert "未通过" in status_row
    await page.screenshot(path=str(SCREENSHOTS / "verify-revoked.png"), full_page=True)

    for name in ("verify-valid.png", "verify-tampered.png", "verify-revoked.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
