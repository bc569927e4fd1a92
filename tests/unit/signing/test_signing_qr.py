"""QR text: the token itself, or `<hub>/v/<id>` when the token is too long."""

from __future__ import annotations

import pytest
import segno
from signing_testkit import make_certificate

from domain.errors import InvalidRequest
from signing import (
    QR_MAX_TOKEN_LENGTH,
    QrReference,
    QrToken,
    SoftwareSigningKey,
    parse_qr_text,
    qr_payload,
)

HUB = "https://tongban.example.gov.cn"


def test_a_token_that_fits_is_the_qr_text(issuer_key: SoftwareSigningKey) -> None:
    certificate = make_certificate()
    token = certificate.sign(issuer_key)
    text = qr_payload(token, HUB, certificate.id)
    assert text == token
    assert parse_qr_text(text) == QrToken(token)
    assert parse_qr_text(f"  {token}\r\n") == QrToken(token)
    version = segno.make_qr(text, error="m").version
    assert isinstance(version, int)
    assert version <= 40


def test_a_token_too_long_becomes_a_hub_url(issuer_key: SoftwareSigningKey) -> None:
    certificate = make_certificate(fields={f"field{i}": "数据" * 20 for i in range(40)})
    token = certificate.sign(issuer_key)
    assert len(token) > QR_MAX_TOKEN_LENGTH
    text = qr_payload(token, HUB + "/", certificate.id)
    assert text == f"{HUB}/v/{certificate.id}"
    assert parse_qr_text(text) == QrReference(hub_url=HUB, short_id=certificate.id)


def test_the_limit_is_what_a_version_40_m_code_holds() -> None:
    assert segno.make_qr("a" * QR_MAX_TOKEN_LENGTH, error="m", boost_error=False).version == 40
    with pytest.raises(segno.DataOverflowError):
        segno.make_qr("a" * (QR_MAX_TOKEN_LENGTH + 1), error="m", boost_error=False)
    assert qr_payload("a.b.c", HUB, "X", max_length=4) == f"{HUB}/v/X"


def test_hub_url_may_have_a_path() -> None:
    parsed = parse_qr_text("http://hall.local:8080/tongban/v/ABC.123")
    assert parsed == QrReference(hub_url="http://hall.local:8080/tongban", short_id="ABC.123")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "a.b",
        "a.b.c.d",
        "ftp://hub/v/ABC",
        "https://hub/x/ABC",
        "https://hub/v/",
        "https://hub/v/ABC/extra",
        "https://hub/v/ABC?x=1",
        "https://hub/v/ABC#frag",
        "https:///v/ABC",
        "https://hub/v/%2e%2e",
        "javascript:alert(1)//v/x",
    ],
)
def test_other_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_qr_text(text)
    assert caught.value.field == "qr_text"


@pytest.mark.parametrize(
    ("hub_url", "short_id", "field"),
    [
        ("hub.example", "ABC", "hub_url"),
        ("ftp://hub.example", "ABC", "hub_url"),
        ("https://hub.example?x=1", "ABC", "hub_url"),
        (HUB, "", "short_id"),
        (HUB, "a/b", "short_id"),
        (HUB, "a b", "short_id"),
        (HUB, "x" * 129, "short_id"),
    ],
)
def test_qr_payload_refuses_bad_references(hub_url: str, short_id: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        qr_payload("x" * (QR_MAX_TOKEN_LENGTH + 1), hub_url, short_id)
    assert caught.value.field == field
