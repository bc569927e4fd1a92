"""Certificate documents: a print-ready PDF of a certificate or of a usage copy (加注件).

The page shows the type's title, the holder (masked where the type says so), the
issuer and its USCC, the data fields with Chinese and English labels in the type's
print order, the validity, the certificate id and a QR code that opens the
verification page. A usage copy's page also carries its stamp ("仅供 … 办理 … 使用，
有效期至 …") in a banner and as a watermark across every page.

Chinese text is set in STSong-Light, one of the PDF standard CJK fonts (Adobe-GB1):
reportlab writes it by name, nothing is embedded or downloaded, viewers substitute
their own Song face, and text extraction (poppler's pdftotext) reads it back.

The signed tokens travel inside the file as embedded files (PDF 1.7 §7.11.4):
`certificate.jws` always, `certificate-second.jws` beside it when the certificate is
dual-signed (its second suite's token), `usage-copy.jws` on a usage copy. `tongban verify FILE.pdf`
reads them back (`embedded_tokens`) and verifies them like any token, so a file whose
embedded token was altered fails as the token does. The info dictionary names the
certificate (and the copy) for tools such as pdfinfo.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import segno
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from reportlab.lib.colors import Color, black
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from domain.errors import InvalidKey, InvalidRequest
from domain.subjects import parse_key
from exchange.certificates.types import CertificateType
from signing import Certificate, JSONValue
from signing.usage_copy import UsageCopy

FONT = "STSong-Light"
CERTIFICATE_ATTACHMENT = "certificate.jws"
# A dual-signed certificate's second token (the other suite's signature, `second_token`).
SECOND_CERTIFICATE_ATTACHMENT = "certificate-second.jws"
USAGE_COPY_ATTACHMENT = "usage-copy.jws"
MAX_PDF_BYTES = 5 * 1024 * 1024
_PAGE_WIDTH, _PAGE_HEIGHT = A4
_MARGIN = 20 * mm
_LABEL_WIDTH = 52 * mm
_BODY_SIZE = 10.5
_LINE = 15.0
_QR_SIZE = 42 * mm
_STAMP_RED = Color(0.78, 0.16, 0.16)
_WATERMARK = Color(0.78, 0.16, 0.16, alpha=0.16)
_RULE = Color(0.75, 0.78, 0.82)

pdfmetrics.registerFont(UnicodeCIDFont(FONT))


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled line of the document."""

    zh: str
    en: str
    value: str


@dataclass(frozen=True, slots=True)
class DocumentContent:
    """What one document page says, ready to lay out."""

    title: str
    title_en: str
    rows: tuple[Row, ...]
    qr_text: str
    certificate_id: str
    # A usage copy's stamp (仅供 … 使用 …), in Chinese and English; empty for a certificate.
    stamp: str = ""
    stamp_en: str = ""
    usage_copy_id: str = ""
    footnote: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EmbeddedTokens:
    """The tokens a Tongban PDF carries."""

    certificate: str
    usage_copy: str | None = None
    # A dual-signed certificate's second token.
    second_certificate: str | None = None


def _when(moment: datetime | None) -> str:
    return "长期 / no expiry" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def field_text(value: JSONValue) -> str:
    """A data field's value as printed (lists and objects joined with ；)."""
    if isinstance(value, bool):
        return "是 / yes" if value else "否 / no"
    if isinstance(value, list):
        return "；".join(field_text(v) for v in value)
    if isinstance(value, dict):
        return "；".join(f"{k}: {field_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def holder_text(certificate: Certificate, *, masked: bool) -> str:
    """The holder as printed: masked (``110101********002X``) or in full."""
    if not masked:
        return certificate.holder_value
    try:
        return parse_key(certificate.holder_kind, certificate.holder_value).masked()
    except InvalidKey:
        return "****"


def certificate_content(
    certificate: Certificate, kind: CertificateType | None, qr_text: str
) -> DocumentContent:
    """The document of `certificate`, laid out as its type says (`kind`; None when the
    type is no longer declared: the default layout, every field the token states)."""
    masked = True if kind is None else kind.layout.mask_holder
    rows = [
        Row("持证主体", "Holder", holder_text(certificate, masked=masked)),
        Row("签发机关", "Issuer", certificate.issuer_department),
        Row("签发机关统一社会信用代码", "Issuer USCC", certificate.issuer_uscc),
        Row("证照标识", "Certificate id", certificate.id),
        Row("版本", "Version", str(certificate.version)),
        Row("签发时间", "Issued", _when(certificate.issued_at)),
        Row("有效期自", "Valid from", _when(certificate.valid_from)),
        Row("有效期至", "Valid until", _when(certificate.valid_until)),
    ]
    order = kind.print_order() if kind is not None else sorted(certificate.fields)
    for name in order:
        if name not in certificate.fields:
            continue
        zh, en = kind.field_label(name) if kind is not None else (name, "")
        rows.append(Row(zh, en, field_text(certificate.fields[name])))
    return DocumentContent(
        title=kind.title if kind is not None else certificate.type_name,
        title_en=kind.layout.title_en if kind is not None else "",
        rows=tuple(rows),
        qr_text=qr_text,
        certificate_id=certificate.id,
        footnote=(
            "扫描二维码或访问核验页面核验本证照；本文件内嵌已签名的证照令牌（certificate.jws）。",
            "Scan the QR code to verify; this file embeds the signed certificate token.",
        ),
    )


def usage_copy_content(
    copy: UsageCopy,
    certificate: Certificate,
    kind: CertificateType | None,
    qr_text: str,
) -> DocumentContent:
    """The document of a usage copy: the certificate's page with the copy's stamp."""
    base = certificate_content(certificate, kind, qr_text)
    until = copy.valid_until.strftime("%Y-%m-%d %H:%M UTC")
    rows = (
        Row("加注件编号", "Usage copy id", copy.usage_copy_id),
        Row("用证单位", "Used by", copy.user),
        Row("办件编号", "Case id", copy.case_id),
        Row("用证事由", "Use cause", copy.use_cause),
        Row("加注时间", "Stamped at", _when(copy.issued_at)),
        Row("加注件有效期至", "Copy valid until", until),
        *base.rows,
    )
    return DocumentContent(
        title=f"{base.title}（加注件）",
        title_en=f"{base.title_en} (usage copy)".strip(),
        rows=rows,
        qr_text=qr_text,
        certificate_id=certificate.id,
        stamp=copy.stamp_text,
        stamp_en=f"For use by {copy.user} only, for {copy.use_cause}, until {until}",
        usage_copy_id=copy.usage_copy_id,
        footnote=(
            "本加注件仅在所载事由和有效期内使用；本文件内嵌加注件令牌和证照令牌。",
            "Valid only for the stated use and period; embeds the usage copy and certificate "
            "tokens.",
        ),
    )


def _wrap(text: str, width: float, size: float) -> list[str]:
    """`text` broken into lines no wider than `width` (per character: CJK has no spaces)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for char in paragraph:
            if line and pdfmetrics.stringWidth(line + char, FONT, size) > width:
                lines.append(line)
                line = char
            else:
                line += char
        lines.append(line)
    return lines


class _Pages:
    """A canvas that starts every page with the watermark and the running header."""

    def __init__(self, content: DocumentContent) -> None:
        self.content = content
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=A4, invariant=True, pageCompression=1)
        self.canvas.setTitle(content.title)
        self.canvas.setSubject(content.certificate_id)
        self.canvas.setCreator("Tongban")
        self.page = 0
        self.y = 0.0
        self._start_page()

    def _start_page(self) -> None:
        self.page += 1
        canvas = self.canvas
        if self.content.stamp:
            self._watermark()
        canvas.setFillColor(black)
        self.y = _PAGE_HEIGHT - _MARGIN
        if self.page > 1:
            canvas.setFont(FONT, 9)
            running = f"{self.content.title} {self.content.certificate_id}"
            canvas.drawString(_MARGIN, self.y, running)
            self.y -= 2 * _LINE

    def _watermark(self) -> None:
        canvas = self.canvas
        canvas.saveState()
        canvas.setFillColor(_WATERMARK)
        canvas.setFont(FONT, 13)
        canvas.translate(_PAGE_WIDTH / 2, _PAGE_HEIGHT / 2)
        canvas.rotate(32)
        for offset in range(-6, 7):
            canvas.drawCentredString(0, offset * 56, self.content.stamp)
        canvas.restoreState()

    def need(self, height: float, reserve: float = 0.0) -> None:
        if self.y - height < _MARGIN + reserve:
            self.canvas.showPage()
            self._start_page()

    def finish(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self.buffer.getvalue()


def _draw_qr(canvas: Canvas, text: str, x: float, y: float, size: float) -> None:
    """The QR code as vector squares (crisp in print, no image library needed)."""
    code = segno.make(text, error="m", micro=False)
    matrix = code.matrix
    quiet = 4
    modules = len(matrix) + 2 * quiet
    cell = size / modules
    canvas.saveState()
    canvas.setFillColor(black)
    for row_number, row in enumerate(matrix):
        top = y + size - (row_number + quiet + 1) * cell
        column = 0
        while column < len(row):
            if row[column]:
                start = column
                while column < len(row) and row[column]:
                    column += 1
                canvas.rect(
                    x + (start + quiet) * cell,
                    top,
                    (column - start) * cell,
                    cell,
                    stroke=0,
                    fill=1,
                )
            else:
                column += 1
    canvas.restoreState()


def render_pdf(content: DocumentContent, attachments: Sequence[tuple[str, str]]) -> bytes:
    """The document as PDF bytes, with `attachments` ((file name, token) pairs) embedded.

    Raises:
        InvalidRequest: the QR text is too long for a QR code.
    """
    if len(content.qr_text) > 2331:
        raise InvalidRequest("qr_text", "too long for a QR code; set signing.public_url")
    pages = _Pages(content)
    canvas = pages.canvas
    width = _PAGE_WIDTH - 2 * _MARGIN
    # The QR code sits top right on the first page, captioned; the title to its left.
    qr_x, qr_y = _PAGE_WIDTH - _MARGIN - _QR_SIZE, _PAGE_HEIGHT - _MARGIN - _QR_SIZE
    _draw_qr(canvas, content.qr_text, qr_x, qr_y, _QR_SIZE)
    canvas.setFillColor(black)
    canvas.setFont(FONT, 8)
    canvas.drawCentredString(qr_x + _QR_SIZE / 2, qr_y - 9, "扫码核验 Scan to verify")
    title_width = width - _QR_SIZE - 10
    title_centre = _MARGIN + title_width / 2
    pages.y -= 14
    canvas.setFont(FONT, 22)
    for line in _wrap(content.title, title_width, 22):
        canvas.drawCentredString(title_centre, pages.y - 22, line)
        pages.y -= 30
    if content.title_en:
        canvas.setFont(FONT, 12)
        for line in _wrap(content.title_en, title_width, 12):
            canvas.drawCentredString(title_centre, pages.y - 10, line)
            pages.y -= 18
    pages.y = min(pages.y, qr_y - 20)
    if content.stamp:
        lines = _wrap(content.stamp, width - 16, 12)
        small = _wrap(content.stamp_en, width - 16, 8)
        height = 15.0 * len(lines) + 11 * len(small) + 14
        canvas.saveState()
        canvas.setStrokeColor(_STAMP_RED)
        canvas.setLineWidth(1.6)
        canvas.rect(_MARGIN, pages.y - height, width, height, stroke=1, fill=0)
        canvas.setFillColor(_STAMP_RED)
        y = pages.y - 18
        canvas.setFont(FONT, 12)
        for line in lines:
            canvas.drawString(_MARGIN + 8, y, line)
            y -= 15
        canvas.setFont(FONT, 8)
        for line in small:
            canvas.drawString(_MARGIN + 8, y, line)
            y -= 11
        canvas.restoreState()
        pages.y -= height + 10
    value_width = width - _LABEL_WIDTH - 8
    for row in content.rows:
        value_lines = _wrap(row.value, value_width, _BODY_SIZE)
        zh_lines = _wrap(row.zh, _LABEL_WIDTH, _BODY_SIZE)
        en_lines = _wrap(row.en, _LABEL_WIDTH, 8) if row.en else []
        height = max(len(value_lines) * _LINE, len(zh_lines) * _LINE + len(en_lines) * 10.0) + 6
        pages.need(height)
        y = pages.y - _LINE + 3
        canvas.setFillColor(black)
        canvas.setFont(FONT, _BODY_SIZE)
        for line in zh_lines:
            canvas.drawString(_MARGIN, y, line)
            y -= _LINE
        canvas.setFont(FONT, 8)
        for line in en_lines:
            canvas.drawString(_MARGIN, y + 4, line)
            y -= 10
        canvas.setFont(FONT, _BODY_SIZE)
        y = pages.y - _LINE + 3
        for line in value_lines:
            canvas.drawString(_MARGIN + _LABEL_WIDTH + 8, y, line)
            y -= _LINE
        pages.y -= height
        canvas.setStrokeColor(_RULE)
        canvas.setLineWidth(0.5)
        canvas.line(_MARGIN, pages.y + 2, _PAGE_WIDTH - _MARGIN, pages.y + 2)
    notes = [part for line in content.footnote for part in _wrap(line, width, 8)]
    link = content.qr_text if content.qr_text.startswith("http") else ""
    link_lines = _wrap(f"核验页面 Verification page: {link}", width, 8) if link else []
    pages.need(11 * (len(notes) + len(link_lines)) + 16)
    y = pages.y - 16
    canvas.setFillColor(black)
    canvas.setFont(FONT, 8)
    for line in [*link_lines, *notes]:
        canvas.drawString(_MARGIN, y, line)
        y -= 11
    drawn = pages.finish()
    return _embed(drawn, content, attachments)


def _embed(drawn: bytes, content: DocumentContent, attachments: Sequence[tuple[str, str]]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(drawn)))
    for name, token in attachments:
        writer.add_attachment(name, token.encode("ascii"))
    info = {"/TongbanCertificateId": content.certificate_id}
    if content.usage_copy_id:
        info["/TongbanUsageCopyId"] = content.usage_copy_id
    writer.add_metadata(info)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def is_pdf(data: bytes) -> bool:
    """True when `data` starts like a PDF file."""
    return data.lstrip()[:5] == b"%PDF-"


def embedded_tokens(data: bytes) -> EmbeddedTokens:
    """The tokens a Tongban PDF embeds.

    Raises:
        InvalidRequest: (``file``, rule) not a readable PDF, larger than 5 MiB, or
            without an embedded `certificate.jws`.
    """
    if len(data) > MAX_PDF_BYTES:
        raise InvalidRequest("file", f"larger than {MAX_PDF_BYTES} bytes")
    try:
        attachments = PdfReader(io.BytesIO(data)).attachments
        found = {name: attachments[name] for name in attachments}
    except (PyPdfError, ValueError, KeyError, OSError) as exc:
        raise InvalidRequest("file", f"is not a readable PDF: {exc}") from exc

    def one(name: str) -> str | None:
        versions = found.get(name)
        if not versions:
            return None
        if len(versions) > 1:
            raise InvalidRequest("file", f"embeds {name} more than once")
        try:
            return versions[0].decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise InvalidRequest("file", f"{name} is not a compact token") from exc

    certificate = one(CERTIFICATE_ATTACHMENT)
    if certificate is None:
        raise InvalidRequest("file", f"embeds no {CERTIFICATE_ATTACHMENT}: not a Tongban document")
    return EmbeddedTokens(
        certificate, one(USAGE_COPY_ATTACHMENT), one(SECOND_CERTIFICATE_ATTACHMENT)
    )
