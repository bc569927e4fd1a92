"""Certificate documents without a hub: layout from the type, embedded tokens, bad files.

Text is read back with poppler's pdftotext (the test skips, saying so, without it).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter

from domain.errors import InvalidRequest
from exchange.certificates.documents import (
    CERTIFICATE_ATTACHMENT,
    certificate_content,
    embedded_tokens,
    is_pdf,
    render_pdf,
)
from exchange.certificates.types import CertificateType
from exchange.settings import CertificateTypeSettings
from signing import Certificate, certificate_id, generate

TYPE = "11100000000013338W002"
ISSUER = "11320100MB0000000J"
PERSON = "11010519491231002X"
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftotext) is not installed; .ci/run installs it",
)


def residence_type(**document: Any) -> CertificateType:
    declared = CertificateTypeSettings(
        name="居住证",
        holder_kind="ID_CARD",
        issuer_uscc=ISSUER,
        issuer_department="南京市公安局",
        fields={"name": "string", "address": "string"},
        optional_fields={"remarks": "array"},
        document=document,
    )
    return CertificateType.from_settings(TYPE, declared)


def residence(**fields: Any) -> Certificate:
    now = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
    return Certificate(
        id=certificate_id(TYPE, ISSUER, "SERIAL1", 1),
        type_code=TYPE,
        type_name="居住证",
        holder_kind="ID_CARD",
        holder_value=PERSON,
        issuer_department="南京市公安局",
        issuer_uscc=ISSUER,
        issued_at=now,
        valid_from=now,
        version=1,
        fields={"name": "李四", "address": "南京市鼓楼区", "remarks": ["一", "二"], **fields},
        status_list_index=1,
    )


def text_of(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "document.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(
        ["pdftotext", "-nodiag", str(path), "-"], capture_output=True, text=True, check=True
    )
    return run.stdout


@needs_poppler
def test_the_default_layout_masks_the_holder_and_labels_fields_by_name(tmp_path: Path) -> None:
    certificate = residence()
    content = certificate_content(certificate, residence_type(), "https://hub.example/v/x")
    text = text_of(render_pdf(content, [(CERTIFICATE_ATTACHMENT, "a.b.c")]), tmp_path)
    assert "居住证" in text
    assert "110105********002X" in text
    assert PERSON not in text
    assert text.index("name") < text.index("address") < text.index("remarks")
    assert "一；二" in text


@needs_poppler
def test_the_configured_layout_orders_labels_and_may_print_the_holder(tmp_path: Path) -> None:
    kind = residence_type(
        title="居住证（电子）",
        title_en="Residence Permit",
        field_order=["address", "name"],
        labels={"address": {"zh": "居住地址", "en": "Address"}, "name": {"zh": "姓名"}},
        mask_holder=False,
    )
    content = certificate_content(residence(), kind, "https://hub.example/v/x")
    text = text_of(render_pdf(content, [(CERTIFICATE_ATTACHMENT, "a.b.c")]), tmp_path)
    assert "居住证（电子）" in text
    assert "Residence Permit" in text
    assert PERSON in text
    assert text.index("居住地址") < text.index("姓名") < text.index("remarks")


def test_a_layout_naming_an_undeclared_field_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"document\.field_order: 'age' is not a field"):
        residence_type(field_order=["age"])
    with pytest.raises(ValueError, match=r"verifier_fields: 'age' is not a field"):
        CertificateTypeSettings(
            name="x",
            holder_kind="ID_CARD",
            issuer_uscc=ISSUER,
            issuer_department="d",
            fields={"name": "string"},
            verifier_fields=["age"],
        )


def test_embedded_tokens_come_back_and_bad_files_are_refused_by_name() -> None:
    token = residence().sign(generate())
    content = certificate_content(residence(), None, token)
    pdf = render_pdf(content, [(CERTIFICATE_ATTACHMENT, token)])
    assert is_pdf(pdf)
    assert embedded_tokens(pdf).certificate == token
    assert embedded_tokens(pdf).usage_copy is None
    assert PdfReader(io.BytesIO(pdf)).metadata["/TongbanCertificateId"] == residence().id

    bare = PdfWriter()
    bare.add_blank_page(100, 100)
    out = io.BytesIO()
    bare.write(out)
    cases = {
        "no token inside": out.getvalue(),
        "not a PDF": b"%PDF-1.7 this is not really a PDF",
        "too large": b"%PDF-" + b"0" * (5 * 1024 * 1024 + 1),
    }
    for case, data in cases.items():
        with pytest.raises(InvalidRequest) as raised:
            embedded_tokens(data)
        assert raised.value.field == "file", case


def test_a_qr_text_too_long_for_a_qr_code_is_refused() -> None:
    content = certificate_content(residence(), None, "x" * 2332)
    with pytest.raises(InvalidRequest) as raised:
        render_pdf(content, [])
    assert raised.value.field == "qr_text"
