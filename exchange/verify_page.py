"""The verification page: anyone shown an e-certificate checks it here, no login.

A verifier pastes the token (or opens the link in the certificate's QR code,
``/v/<certificate id>``, or a usage copy's, ``/u/<usage copy token>``) and sees the
verdict: the certificate's type, its holder (masked), issuer and validity, and every
check passed or failed, in Chinese with English beside it. Of the data fields only
those the type marks as shown to verifiers (`verifier_fields`) appear, so that a clerk
can compare them with the paper in front of them. A usage copy is shown with its stamp
first and prominently ("仅供 … 办理 … 使用，有效期至 …"), then its own checks, then the
certificate's. Until every check passed, everything stated is marked as claimed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from html import escape

from aiohttp import web

from domain.errors import InvalidKey, NotFound, TongbanError
from domain.subjects import parse_key
from exchange.certificates.verification import Presented, PresentedKind
from signing import Certificate, CheckName, SuiteResult, Verdict
from signing.usage_copy import CopyCheckName, UsageCopyVerdict

# A certificate's verdict may come with how each of its tokens fared (dual-signed).
PageVerdict = Verdict | UsageCopyVerdict | tuple[Verdict, Sequence[SuiteResult]]
_SUITE_LABELS = {"international": ("国际算法", "international"), "gm": ("国密算法", "GM (SM2/SM3)")}
VerifyFunction = Callable[[Presented], Awaitable[PageVerdict]]
# (Chinese label, English label, value) of each data field shown to verifiers.
ShownFields = Callable[[Certificate], Sequence[tuple[str, str, str]]]

MAX_TOKEN_CHARS = 20_000

_CHECK_LABELS = {
    CheckName.INTEGRITY: ("数据完整", "Well-formed"),
    CheckName.SIGNATURE: ("签名有效", "Signature"),
    CheckName.ISSUER_TRUSTED: ("签发机关可信", "Issuer trusted"),
    CheckName.KEY_VALID_AT_ISSUE: ("签发时密钥有效", "Key valid at issue"),
    CheckName.STATUS: ("未被吊销或中止", "Not revoked or suspended"),
    CheckName.VALIDITY_WINDOW: ("在有效期内", "Within validity period"),
}

_COPY_CHECK_LABELS = {
    CopyCheckName.INTEGRITY: ("加注件完整", "Usage copy well-formed"),
    CopyCheckName.SIGNATURE: ("加注件签名有效", "Signed by the hub"),
    CopyCheckName.CERTIFICATE_MATCH: ("对应本证照", "Names this certificate"),
    CopyCheckName.VALIDITY_WINDOW: ("加注件在有效期内", "Usage copy within its period"),
}

_STYLE = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei","WenQuanYi Zen Hei",
sans-serif;
max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2733;background:#f6f8fa}
h1{font-size:1.4rem} .en{color:#5a6a7a;font-size:.9em}
.verdict{padding:1rem 1.2rem;border-radius:.5rem;margin:1rem 0;font-size:1.2rem}
.valid{background:#e3f4e6;border:2px solid #2e7d32}
.invalid{background:#fdecea;border:2px solid #c62828}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #d0d7de;padding:.45rem .6rem;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
.pass{color:#2e7d32;font-weight:bold} .fail{color:#c62828;font-weight:bold}
textarea{width:100%;height:8rem;font-family:monospace}
button{font-size:1rem;padding:.4rem 1.2rem}
.stamp{border:3px solid #c62828;color:#c62828;padding:.8rem 1rem;font-size:1.3rem;
font-weight:bold;margin:1rem 0;background:#fff}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def render_form(problem: str = "") -> str:
    """The page where a verifier pastes a token."""
    note = f'<p class="fail">{escape(problem)}</p>' if problem else ""
    return _page(
        "电子证照核验 / Verify an e-certificate",
        "<h1>电子证照核验 <span class='en'>Verify an e-certificate</span></h1>"
        f"{note}"
        '<form method="post" action="/">'
        '<p><label for="token">粘贴证照令牌或二维码内容 '
        '<span class="en">Paste the certificate token or QR text</span></label></p>'
        '<textarea id="token" name="token" required></textarea>'
        '<p><button type="submit">核验 <span class="en">Verify</span></button></p>'
        "</form>",
    )


def _masked_holder(kind: str, value: str) -> str:
    try:
        return parse_key(kind, value).masked()
    except InvalidKey:
        return "****"


def _when(moment: datetime | None) -> str:
    return "长期 / no expiry" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _facts_table(certificate: Certificate, claimed: str, shown: ShownFields | None) -> str:
    facts = [
        ("证照类型", "Type", f"{certificate.type_name} ({certificate.type_code})"),
        ("持证主体", "Holder", _masked_holder(certificate.holder_kind, certificate.holder_value)),
        ("签发机关", "Issuer", f"{certificate.issuer_department} ({certificate.issuer_uscc})"),
        ("证照标识", "Identifier", f"{certificate.id} v{certificate.version}"),
        ("签发时间", "Issued", _when(certificate.issued_at)),
        ("有效期自", "Valid from", _when(certificate.valid_from)),
        ("有效期至", "Valid until", _when(certificate.valid_until)),
    ]
    if shown is not None:
        facts.extend(shown(certificate))
    return (
        f"<h2>证照信息 <span class='en'>Certificate{claimed}</span></h2><table>"
        + "".join(
            f"<tr><th>{escape(zh)} <span class='en'>{escape(en)}</span></th>"
            f"<td>{escape(value)}</td></tr>"
            for zh, en, value in facts
        )
        + "</table>"
    )


_T = r"(\S+?)"  # a time, key id, USCC or URI inside a reason
# The verifier's reasons (signing/verifier.py, signing/usage_copy.py) in Chinese; the
# English text is shown beside. A reason matching none of them gets a generic line.
_REASONS_ZH: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"$"), zh)
    for pattern, zh in (
        (r"token is a well-formed certificate JWS", "令牌格式正确，是一份完整的电子证照"),
        (r"signature verifies", "签名与签名密钥相符，内容未被改动"),
        (
            r"key belongs to the named issuer in the trust bundle",
            "签名密钥属于信任清单中的该签发机关",
        ),
        (r"key was valid when the certificate was issued", "签发时签名密钥有效"),
        (r"neither revoked nor suspended", "未被吊销，也未被中止"),
        (r"within its validity window", "在有效期内"),
        (rf"key {_T} is not in the trust bundle", "签名密钥 {0} 不在信任清单中"),
        (rf"header alg {_T} but key {_T} is {_T}", "令牌声明的算法 {0} 与密钥 {1} 的算法 {2} 不符"),
        (rf"trust bundle expired at {_T}; refresh it", "信任清单已于 {0} 过期，请更新"),
        (
            rf"key {_T} belongs to issuer {_T}, but the certificate names {_T}",
            "签名密钥 {0} 属于签发机关 {1}，而证照写明的签发机关是 {2}",
        ),
        (
            r"no status list loaded; revocation cannot be ruled out",
            "未载入状态清单，无法排除已被吊销",
        ),
        (rf"status list expired at {_T}; refresh it", "状态清单已于 {0} 过期，请更新"),
        (
            rf"certificate's status list is {_T}, not the one loaded",
            "证照的状态清单是 {0}，不是已载入的那份",
        ),
        (r"status index (\d+) is outside the status list", "状态序号 {0} 超出状态清单范围"),
        (r"certificate is revoked \(status index (\d+)\)", "证照已被吊销（状态序号 {0}）"),
        (r"certificate is suspended \(status index (\d+)\)", "证照已被中止（状态序号 {0}）"),
        (rf"not valid before {_T}", "{0} 之前尚未生效"),
        (rf"expired at {_T}", "已于 {0} 过期"),
        (rf"valid until {_T}", "有效期至 {0}"),
        (rf"key {_T} is compromised since {_T}; .*", "签名密钥 {0} 自 {1} 起已泄露"),
        (r"not checked: (.+)", "未检查：依赖的检查（{0}）未通过"),
        (r"the certificate token is not the one the copy names", "证照令牌不是加注件所指的那一份"),
        (r"the certificate id is not the copy's", "证照标识与加注件所指的不符"),
        (rf"names certificate {_T}", "指向证照 {0}"),
        (r"certificate claims: .*", "证照内容不符合格式要求"),
    )
)


def _reason_zh(reason: str, passed: bool) -> str:
    """`reason` in Chinese: a known reason translated, else a generic line."""
    for pattern, zh in _REASONS_ZH:
        matched = pattern.match(reason)
        if matched is not None:
            return zh.format(*matched.groups())
    return "符合要求" if passed else "未通过（原因见英文说明）"


def _reason_cell(reason: str, passed: bool) -> str:
    """A check's explanation in Chinese with the verifier's English beside it."""
    if not reason:
        return ""
    return f"{escape(_reason_zh(reason, passed))} <span class='en'>{escape(reason)}</span>"


def _checks_table(title: str, rows: Sequence[tuple[str, str, bool, str]]) -> str:
    checks = "".join(
        f"<tr><td>{escape(zh)} <span class='en'>{escape(en)}</span></td>"
        + (
            '<td class="pass">通过 <span class="en">passed</span></td>'
            if passed
            else '<td class="fail">未通过 <span class="en">failed</span></td>'
        )
        + f"<td>{_reason_cell(reason, passed)}</td></tr>"
        for zh, en, passed, reason in rows
    )
    return (
        f"<h2>{title}</h2><table>"
        "<tr><th>检查 <span class='en'>Check</span></th>"
        "<th>结果 <span class='en'>Result</span></th>"
        f"<th>说明 <span class='en'>Detail</span></th></tr>{checks}</table>"
    )


# Said beside content that did not verify, in both languages: a Chinese-only reader
# must be told too.
_CLAIMED = ' （声明内容，未经验证）<span class="en">(claimed, not verified)</span>'


def _revoked(verdict: Verdict) -> bool:
    return any(
        c.name is CheckName.STATUS and not c.passed and "revoked" in c.reason.lower()
        for c in verdict.checks
    )


def _certificate_checks(verdict: Verdict) -> list[tuple[str, str, bool, str]]:
    return [(*_CHECK_LABELS[c.name], c.passed, c.reason) for c in verdict.checks]


def render_suites(suites: Sequence[SuiteResult]) -> str:
    """Which signature suites verified: one row per token of the certificate."""
    rows = []
    for suite in suites:
        zh, en = _SUITE_LABELS.get(suite.suite, (suite.suite, suite.suite))
        result = (
            '<td class="pass">已验证 <span class="en">verified</span></td>'
            if suite.valid
            else '<td class="fail">未通过 <span class="en">failed</span></td>'
        )
        rows.append(
            f"<tr><td>{escape(zh)} <span class='en'>{escape(en)}</span></td>"
            f"<td>{escape(suite.alg)}</td>{result}"
            f"<td>{'; '.join(_reason_cell(r, suite.valid) for r in suite.reasons)}</td></tr>"
        )
    return (
        "<h2>签名算法 <span class='en'>Signatures</span></h2><table>"
        "<tr><th>算法体系 <span class='en'>Suite</span></th><th>alg</th>"
        "<th>结果 <span class='en'>Result</span></th>"
        f"<th>说明 <span class='en'>Detail</span></th></tr>{''.join(rows)}</table>"
    )


def render_verdict(
    verdict: Verdict, shown: ShownFields | None = None, suites: Sequence[SuiteResult] = ()
) -> str:
    """The verdict page: the certificate as it states itself, every check, and which
    signature suites verified."""
    if verdict.valid:
        banner = (
            '<div class="verdict valid">✔ 证照有效 <span class="en">Valid certificate</span></div>'
        )
    elif _revoked(verdict):
        banner = (
            '<div class="verdict invalid">✘ 证照已吊销 '
            '<span class="en">This certificate was REVOKED</span></div>'
        )
    else:
        banner = (
            '<div class="verdict invalid">✘ 证照无效 '
            '<span class="en">This certificate is NOT valid</span></div>'
        )
    rows = []
    if verdict.certificate is not None:
        claimed = "" if verdict.valid else _CLAIMED
        rows.append(_facts_table(verdict.certificate, claimed, shown))
    rows.append(
        _checks_table("核验项 <span class='en'>Checks</span>", _certificate_checks(verdict))
    )
    if suites:
        rows.append(render_suites(suites))
    return _page(
        "核验结果 / Verification result",
        "<h1>核验结果 <span class='en'>Verification result</span></h1>"
        + banner
        + "".join(rows)
        + '<p><a href="/">核验另一份 <span class="en">Verify another</span></a></p>',
    )


def render_copy_verdict(verdict: UsageCopyVerdict, shown: ShownFields | None = None) -> str:
    """The verdict page of a usage copy: its stamp, its checks, the certificate's."""
    if verdict.valid:
        banner = (
            '<div class="verdict valid">✔ 加注件有效 '
            '<span class="en">Valid usage copy of a valid certificate</span></div>'
        )
    else:
        banner = (
            '<div class="verdict invalid">✘ 加注件无效 '
            '<span class="en">This usage copy is NOT valid</span></div>'
        )
    claimed = "" if verdict.valid else _CLAIMED
    parts = [banner]
    copy = verdict.usage_copy
    if copy is not None:
        until = copy.valid_until.strftime("%Y-%m-%d %H:%M UTC")
        parts.append(
            f'<div class="stamp">{escape(copy.stamp_text)}'
            f'<br><span class="en">For use by {escape(copy.user)} only, for '
            f"{escape(copy.use_cause)} (case {escape(copy.case_id)}), until {until}"
            f"{claimed}</span></div>"
        )
        facts = [
            ("加注件编号", "Usage copy id", copy.usage_copy_id),
            ("用证单位", "Used by", copy.user),
            ("办件编号", "Case id", copy.case_id),
            ("用证事由", "Use cause", copy.use_cause),
            ("加注时间", "Stamped at", _when(copy.issued_at)),
            ("加注件有效期至", "Copy valid until", until),
        ]
        parts.append(
            f"<h2>加注件 <span class='en'>Usage copy{claimed}</span></h2><table>"
            + "".join(
                f"<tr><th>{zh} <span class='en'>{en}</span></th><td>{escape(value)}</td></tr>"
                for zh, en, value in facts
            )
            + "</table>"
        )
    parts.append(
        _checks_table(
            "加注件核验项 <span class='en'>Usage copy checks</span>",
            [(*_COPY_CHECK_LABELS[c.name], c.passed, c.reason) for c in verdict.checks],
        )
    )
    certificate = verdict.certificate
    if certificate is not None:
        if certificate.certificate is not None:
            parts.append(_facts_table(certificate.certificate, claimed, shown))
        parts.append(
            _checks_table(
                "证照核验项 <span class='en'>Certificate checks</span>",
                _certificate_checks(certificate),
            )
        )
    return _page(
        "加注件核验结果 / Usage copy verification",
        "<h1>加注件核验结果 <span class='en'>Usage copy verification</span></h1>"
        + "".join(parts)
        + '<p><a href="/">核验另一份 <span class="en">Verify another</span></a></p>',
    )


def add_verification_routes(
    app: web.Application, verify: VerifyFunction, shown: ShownFields | None = None
) -> None:
    """Serve the form at ``/``, verdicts for pasted tokens, ``/v/<id>`` links and
    ``/u/<usage copy token>`` links."""

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=render_form(), content_type="text/html")

    async def pasted(request: web.Request) -> web.Response:
        data = await request.post()
        text = str(data.get("token", "")).strip()
        if not text:
            return web.Response(
                text=render_form("请粘贴令牌 / Please paste a token"),
                content_type="text/html",
                status=400,
            )
        if len(text) > MAX_TOKEN_CHARS:
            return web.Response(
                text=render_form("内容过长 / That is too long to be a certificate"),
                content_type="text/html",
                status=413,
            )
        return await _answer(Presented(PresentedKind.QR_TEXT, text))

    async def linked(request: web.Request) -> web.Response:
        certificate_id = request.match_info["certificate_id"]
        return await _answer(Presented(PresentedKind.CERTIFICATE_ID, certificate_id))

    async def copy_linked(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if len(token) > MAX_TOKEN_CHARS:
            return web.Response(
                text=render_form("内容过长 / That is too long to be a usage copy"),
                content_type="text/html",
                status=413,
            )
        return await _answer(Presented(PresentedKind.USAGE_COPY, token))

    async def _answer(presented: Presented) -> web.Response:
        try:
            verdict = await verify(presented)
        except TongbanError as exc:
            return web.Response(
                text=render_form(f"无法核验 / Cannot verify: {exc.message}"),
                content_type="text/html",
                status=404 if isinstance(exc, NotFound) else 400,
            )
        if isinstance(verdict, UsageCopyVerdict):
            page = render_copy_verdict(verdict, shown)
        elif isinstance(verdict, tuple):
            page = render_verdict(verdict[0], shown, verdict[1])
        else:
            page = render_verdict(verdict, shown)
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/", form)
    app.router.add_post("/", pasted)
    app.router.add_get("/v/{certificate_id}", linked)
    app.router.add_get("/u/{token}", copy_linked)
