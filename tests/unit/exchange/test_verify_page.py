"""The verification page explains every check in Chinese, with the verifier's English."""

from __future__ import annotations

import re

from exchange.verify_page import render_verdict
from signing import CheckName, Verdict
from signing.verifier import CheckResult


def detail_cells(page: str) -> list[str]:
    rows = re.findall(
        r"<tr><td>(.*?)</td><td class=\"(?:pass|fail)\">.*?</td><td>(.*?)</td></tr>", page
    )
    return [detail for _, detail in rows]


def test_every_detail_is_in_chinese_with_the_english_beside_it() -> None:
    verdict = Verdict(
        False,
        (
            CheckResult(CheckName.INTEGRITY, True, "token is a well-formed certificate JWS"),
            CheckResult(CheckName.SIGNATURE, True, "signature verifies"),
            CheckResult(
                CheckName.ISSUER_TRUSTED,
                True,
                "key belongs to the named issuer in the trust bundle",
            ),
            CheckResult(
                CheckName.KEY_VALID_AT_ISSUE, True, "key was valid when the certificate was issued"
            ),
            CheckResult(CheckName.STATUS, False, "certificate is revoked (status index 17)"),
            CheckResult(CheckName.VALIDITY_WINDOW, False, "expired at 2026-01-01T00:00:00Z"),
        ),
        None,
    )

    details = detail_cells(render_verdict(verdict))

    assert details == [
        "令牌格式正确，是一份完整的电子证照 "
        "<span class='en'>token is a well-formed certificate JWS</span>",
        "签名与签名密钥相符，内容未被改动 <span class='en'>signature verifies</span>",
        "签名密钥属于信任清单中的该签发机关 "
        "<span class='en'>key belongs to the named issuer in the trust bundle</span>",
        "签发时签名密钥有效 <span class='en'>key was valid when the certificate was issued</span>",
        "证照已被吊销（状态序号 17） "
        "<span class='en'>certificate is revoked (status index 17)</span>",
        "已于 2026-01-01T00:00:00Z 过期 <span class='en'>expired at 2026-01-01T00:00:00Z</span>",
    ]


def test_a_reason_the_page_does_not_know_still_gets_a_chinese_line() -> None:
    verdict = Verdict(
        False,
        (CheckResult(CheckName.INTEGRITY, False, "the token has 2 parts, not 3"),),
        None,
    )

    [detail] = detail_cells(render_verdict(verdict))

    assert detail == "未通过（原因见英文说明） <span class='en'>the token has 2 parts, not 3</span>"
