"""Usage copies (加注件): signed by the root key, bound to one certificate token, checked
with the certificate's own six checks. Pure: no store, no network."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from signing_testkit import DAY, NOW, make_certificate, make_verifier, ring_with

from domain.errors import InvalidRequest
from signing import StatusList, StatusPurpose, generate
from signing.base64url import b64url_decode, b64url_encode
from signing.usage_copy import (
    CopyCheckName,
    UsageCopy,
    is_usage_copy,
    token_sha256,
    verify_usage_copy,
)

ROOT = generate()
ISSUER = generate()
CERTIFICATE = make_certificate()
CERTIFICATE_TOKEN = CERTIFICATE.sign(ISSUER)


def copy_of(certificate_token: str = CERTIFICATE_TOKEN, **changes: object) -> UsageCopy:
    values: dict[str, object] = {
        "usage_copy_id": "UC-0123456789ABCDEF0123456789ABCDEF",
        "certificate_id": CERTIFICATE.id,
        "certificate_sha256": token_sha256(certificate_token),
        "type_code": CERTIFICATE.type_code,
        "type_name": CERTIFICATE.type_name,
        "holder_masked": "91350100********1B",
        "issuer_department": CERTIFICATE.issuer_department,
        "issuer_uscc": CERTIFICATE.issuer_uscc,
        "user_organization": "91320102MA1UXW2B65",
        "user_system": "window-1",
        "case_id": "CASE-1",
        "use_cause": "银行开户",
        "issued_at": NOW - DAY,
        "valid_from": NOW - DAY,
        "valid_until": NOW + 29 * DAY,
        **changes,
    }
    return UsageCopy(**values)  # type: ignore[arg-type]


def failed(token: str, certificate_token: str | None = CERTIFICATE_TOKEN, **kw: object) -> list:
    status = kw.pop("status_list", StatusList())
    now = kw.pop("now", NOW)
    verifier = make_verifier(ring_with(ISSUER), ROOT, status)  # type: ignore[arg-type]
    verdict = verify_usage_copy(
        token,
        certificate_token,
        root=ROOT.public_key(),
        certificate_verifier=verifier,
        now=now,  # type: ignore[arg-type]
    )
    own = [f"COPY {c.name.value}" for c in verdict.checks if not c.passed]
    certificate = (
        [c.name.value for c in verdict.certificate.failures] if verdict.certificate else []
    )
    assert verdict.valid is (not own and not certificate)
    return own + certificate


def revoked() -> StatusList:
    status = StatusList()
    status.set(CERTIFICATE.status_list_index, StatusPurpose.REVOCATION)
    return status


def resigned_payload(token: str, **claims: object) -> str:
    import json

    head, payload, signature = token.split(".")
    decoded = json.loads(b64url_decode(payload))
    decoded.update(claims)
    return f"{head}.{b64url_encode(json.dumps(decoded).encode())}.{signature}"


UNSIGNED = ["COPY SIGNATURE", "COPY CERTIFICATE_MATCH", "COPY VALIDITY_WINDOW"]
TABLE = {
    "valid": (lambda: copy_of().sign(ROOT), {}, []),
    "expired": (lambda: copy_of().sign(ROOT), {"now": NOW + 30 * DAY}, ["COPY VALIDITY_WINDOW"]),
    "not yet valid": (
        lambda: copy_of(valid_from=NOW + DAY, issued_at=NOW + DAY).sign(ROOT),
        {},
        ["COPY VALIDITY_WINDOW"],
    ),
    "certificate revoked": (lambda: copy_of().sign(ROOT), {"status_list": revoked()}, ["STATUS"]),
    "signed by another key": (lambda: copy_of().sign(generate()), {}, UNSIGNED),
    "claims changed after signing": (
        lambda: resigned_payload(copy_of().sign(ROOT), use_cause="不动产抵押"),
        {},
        UNSIGNED,
    ),
    "another certificate": (
        lambda: copy_of().sign(ROOT),
        {"certificate_token": make_certificate(serial="20250002").sign(ISSUER)},
        ["COPY CERTIFICATE_MATCH"],
    ),
    "no certificate at hand": (
        lambda: copy_of().sign(ROOT),
        {"certificate_token": None},
        ["COPY CERTIFICATE_MATCH"],
    ),
    "a certificate token, not a copy": (
        lambda: CERTIFICATE_TOKEN,
        {},
        ["COPY INTEGRITY", *UNSIGNED],
    ),
}


@pytest.mark.parametrize("case", list(TABLE))
def test_usage_copy_table(case: str) -> None:
    make, options, expected = TABLE[case]
    options = dict(options)
    certificate_token = options.pop("certificate_token", CERTIFICATE_TOKEN)
    assert failed(make(), certificate_token, **options) == expected  # type: ignore[arg-type]


def test_claims_round_trip_and_the_stamp_names_user_cause_and_end() -> None:
    copy = copy_of()
    assert UsageCopy.from_claims(copy.to_claims()) == copy
    assert copy.stamp_text == (
        "仅供 91320102MA1UXW2B65/window-1 办理 银行开户（CASE-1）使用，"
        "有效期至 2025-12-30 00:00 UTC"
    )
    token = copy.sign(ROOT)
    assert is_usage_copy(token)
    assert not is_usage_copy(CERTIFICATE_TOKEN)
    assert not is_usage_copy("not.a.token")


def test_numeric_dates_must_agree_and_windows_must_not_be_empty() -> None:
    claims = copy_of().to_claims()
    claims["exp"] = int(claims["exp"]) + 1  # type: ignore[call-overload]
    with pytest.raises(InvalidRequest) as raised:
        UsageCopy.from_claims(claims)
    assert raised.value.field == "exp"
    with pytest.raises(InvalidRequest) as raised:
        copy_of(valid_until=NOW - DAY)
    assert raised.value.field == "valid_until"
    with pytest.raises(InvalidRequest) as raised:
        copy_of(use_cause=" ")
    assert raised.value.field == "use_cause"


def test_the_copy_checks_are_reported_in_order() -> None:
    verdict = verify_usage_copy(
        copy_of().sign(ROOT),
        CERTIFICATE_TOKEN,
        root=ROOT.public_key(),
        certificate_verifier=make_verifier(ring_with(ISSUER), ROOT, StatusList()),
        now=NOW + timedelta(seconds=1),
    )
    assert [c.name for c in verdict.checks] == list(CopyCheckName)
    assert verdict.valid
    assert verdict.usage_copy == copy_of()
    assert verdict.certificate is not None
    assert verdict.certificate.certificate == CERTIFICATE
    assert replace(verdict, valid=False).reasons == ()
