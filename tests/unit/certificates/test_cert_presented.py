"""What a verifier presents, page tokens, status-list sizes, CLI argument parsing: pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import InvalidRequest
from exchange.certificates.publisher import status_list_size
from exchange.certificates.verification import (
    Presented,
    PresentedKind,
    certificate_id_of,
    check_presented,
    token_of,
)
from exchange.cli.certificates import parse_fields, parse_holder
from exchange.generated import common_pb2
from exchange.services.certificates import decode_page_token, encode_page_token
from signing import certificate_id, parse_certificate_id

ID = certificate_id("11100000000013338W001", "11320100MB1111116K", "3N7D9EA6TXY9EVNH", 1)
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJpZCI6IngifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("presented", "token", "named"),
    [
        (Presented(PresentedKind.TOKEN, TOKEN), TOKEN, None),
        (Presented(PresentedKind.QR_TEXT, f" {TOKEN}\n"), TOKEN, None),
        (Presented(PresentedKind.CERTIFICATE_ID, ID), None, ID),
        (Presented(PresentedKind.QR_TEXT, f"https://tongban.example.gov.cn/v/{ID}"), None, ID),
    ],
)
def test_presented_forms(presented: Presented, token: str | None, named: str | None) -> None:
    check_presented(presented)
    assert token_of(presented) == token
    if named is not None:
        assert certificate_id_of(presented) == named


@pytest.mark.parametrize(
    ("presented", "field"),
    [
        (Presented(PresentedKind.TOKEN, ""), "token"),
        (Presented(PresentedKind.CERTIFICATE_ID, "1.2.156.3005.2.X"), "certificate_id"),
        (Presented(PresentedKind.CERTIFICATE_ID, ID[:-1] + "0"), "certificate_id"),
        (Presented(PresentedKind.QR_TEXT, "ftp://x/v/1"), "qr_text"),
        (Presented(PresentedKind.QR_TEXT, "https://hub.cn/v/not-an-id"), "qr_text"),
    ],
)
def test_malformed_presentations_name_the_field(presented: Presented, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_presented(presented)
    assert raised.value.field == field


def test_every_single_character_change_of_an_id_body_is_caught() -> None:
    # ISO/IEC 7064 MOD 37,36 detects every single substitution in the checked part.
    prefix = "1.2.156.3005.2."
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    body = ID[len(prefix) : -2]
    caught = 0
    for position, original in enumerate(body):
        if original == ".":
            continue
        for replacement in alphabet:
            if replacement == original:
                continue
            changed = prefix + body[:position] + replacement + body[position + 1 :] + ID[-2:]
            with pytest.raises(InvalidRequest):
                parse_certificate_id(changed)
            caught += 1
    assert caught > 1000


def test_page_tokens_round_trip_and_forgeries_are_refused() -> None:
    class Last:
        id = ID

        class certificate:
            issued_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    token = encode_page_token(Last)  # type: ignore[arg-type]
    assert decode_page_token(token) == (Last.certificate.issued_at, ID)
    assert decode_page_token("") is None
    for forged in ("%%%", "eyJ0IjogMX0", "e30"):
        with pytest.raises(InvalidRequest) as raised:
            decode_page_token(forged)
        assert raised.value.field == "page_token"


def test_status_lists_grow_by_powers_of_two_from_131072() -> None:
    assert status_list_size(0) == 131_072
    assert status_list_size(131_072) == 131_072
    assert status_list_size(131_073) == 262_144


def test_cli_holder_and_fields() -> None:
    holder = parse_holder("uscc:91350100M000100Y43")
    assert holder.kind == common_pb2.KEY_KIND_USCC
    with pytest.raises(InvalidRequest):
        parse_holder("91350100M000100Y43")
    fields = parse_fields(["name=一百", "capital:=100", "listed:=true", "tags:=[1,2]"], None)
    assert dict(fields) == {"name": "一百", "capital": 100.0, "listed": True, "tags": [1.0, 2.0]}
    with pytest.raises(InvalidRequest):
        parse_fields(["capital:=not json"], None)
