"""Builders shared by the signing tests: certificates, key rings, and verifiers built the
way a real verifier gets them (bundle and status list signed, then loaded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from signing import (
    Certificate,
    KeyRing,
    SigningKey,
    StatusList,
    TrustBundle,
    Verifier,
    certificate_id,
)

USCC_A = "91350100M000100Y43"
USCC_B = "911101080000000005"
DEPARTMENT_A = "福州市市场监督管理局"
DEPARTMENT_B = "北京市海淀区自然资源局"
TYPE_CODE = "11100000000013338W001"
STATUS_URI = "https://hub.example.gov.cn/status/1"

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 12, 1, tzinfo=UTC)
FAR = datetime(2035, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def make_certificate(
    *,
    serial: str = "20250001",
    issuer_uscc: str = USCC_A,
    issued_at: datetime = T0 + 10 * DAY,
    **overrides: Any,
) -> Certificate:
    """A realistic business-licence certificate; any member can be overridden."""
    version = overrides.pop("version", 1)
    values: dict[str, Any] = {
        "id": certificate_id(TYPE_CODE, issuer_uscc, serial, version),
        "type_code": TYPE_CODE,
        "type_name": "营业执照",
        "holder_kind": "USCC",
        "holder_value": "91350100MA2XYZ0A1B",
        "issuer_department": DEPARTMENT_A if issuer_uscc == USCC_A else DEPARTMENT_B,
        "issuer_uscc": issuer_uscc,
        "issued_at": issued_at,
        "valid_from": issued_at,
        "valid_until": FAR,
        "version": version,
        "fields": {
            "name": "福州通办科技有限公司",
            "legal_representative": "张三",
            "registered_capital": "100万元人民币",
            "address": "福建省福州市鼓楼区五四路1号",
        },
        "status_list_index": 7,
        "status_list_uri": STATUS_URI,
    }
    values.update(overrides)
    return Certificate(**values)


def ring_with(key: SigningKey, *, issuer_uscc: str = USCC_A, at: datetime = T0) -> KeyRing:
    """A key ring where `key` is the one active key of `issuer_uscc` since `at`."""
    department = DEPARTMENT_A if issuer_uscc == USCC_A else DEPARTMENT_B
    return KeyRing().activate(key, issuer_department=department, issuer_uscc=issuer_uscc, at=at)


def signed_bundle(
    ring: KeyRing,
    root: SigningKey,
    *,
    issued_at: datetime = NOW - DAY,
    expires: datetime = FAR,
) -> str:
    return ring.bundle(issued_at=issued_at, next_update=issued_at + DAY, expires=expires).sign(root)


def signed_status_list(
    status_list: StatusList,
    root: SigningKey,
    *,
    issued_at: datetime = NOW - DAY,
    expires: datetime = FAR,
) -> str:
    return status_list.sign(root, issued_at=issued_at, next_update=issued_at + DAY, expires=expires)


def loaded_bundle(
    ring: KeyRing, root: SigningKey, *, expires: datetime = FAR, at: datetime = NOW - DAY
) -> TrustBundle:
    """The trust bundle of `ring`, signed by `root` and loaded back at `at`."""
    return TrustBundle.load(
        signed_bundle(ring, root, issued_at=at, expires=expires), root.public_jwk(), at
    )


def make_verifier(
    ring: KeyRing,
    root: SigningKey,
    status_list: StatusList | None = None,
    *,
    bundle_expires: datetime = FAR,
    status_expires: datetime = FAR,
    loaded_at: datetime = NOW - DAY,
) -> Verifier:
    """A verifier fed exactly as an offline verifier is: signed documents, loaded."""
    root_jwk = root.public_jwk()
    bundle = loaded_bundle(ring, root, expires=bundle_expires, at=loaded_at)
    loaded_status = None
    if status_list is not None:
        loaded_status = StatusList.load(
            signed_status_list(status_list, root, issued_at=loaded_at, expires=status_expires),
            root_jwk,
            loaded_at,
        )
    return Verifier.from_bundle(bundle, loaded_status, clock=lambda: NOW)
