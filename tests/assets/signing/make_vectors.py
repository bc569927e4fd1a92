"""Regenerate `vectors.json`: signed Tongban documents for regression tests.

    .venv/bin/python tests/assets/signing/make_vectors.py

Keys are generated fresh in memory on every run and never written: the file holds only
public keys, tokens and the outcomes expected at its fixed `now`. A token made by an
earlier version of the code must keep verifying, so regenerate only on purpose.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from signing import (
    Algorithm,
    Certificate,
    CheckName,
    KeyRing,
    StatusList,
    StatusPurpose,
    TrustBundle,
    Verifier,
    certificate_id,
    encode_bitstring,
    generate,
)
from signing.timestamps import format_rfc3339

OUT = Path(__file__).with_name("vectors.json")
USCC_A = "91350100M000100Y43"
USCC_B = "911101080000000005"
DEPARTMENTS = {USCC_A: "福州市市场监督管理局", USCC_B: "北京市海淀区自然资源局"}
TYPE_CODE = "11100000000013338W001"
NOW = datetime(2025, 12, 1, tzinfo=UTC)
STATUS_URI = "https://hub.example.gov.cn/status/1"
BIT_ORDER_INDICES = [0, 7, 8, 9, 1000, 131071]


def _day(month: int, day: int) -> datetime:
    return datetime(2025, month, day, tzinfo=UTC)


def main() -> None:
    root = generate()
    a1, a2, b = generate(), generate(), generate(Algorithm.ES256)
    ring = (
        KeyRing()
        .activate(a1, issuer_department=DEPARTMENTS[USCC_A], issuer_uscc=USCC_A, at=_day(1, 1))
        .activate(b, issuer_department=DEPARTMENTS[USCC_B], issuer_uscc=USCC_B, at=_day(1, 1))
        .rotate(a2, issuer_uscc=USCC_A, at=_day(7, 1))
        .compromise(b.kid, since=_day(10, 1))
    )
    bundle = ring.bundle(issued_at=_day(11, 1), next_update=_day(11, 2), expires=_day(12, 31))
    status_list = StatusList(uri=STATUS_URI)
    status_list.set(3, StatusPurpose.REVOCATION)
    status_list.set(4, StatusPurpose.SUSPENSION)
    status_token = status_list.sign(
        root, issued_at=_day(11, 20), next_update=_day(11, 21), expires=_day(12, 31)
    )

    cases = [
        ("retired key, signed while active", a1, USCC_A, _day(3, 1), 10, None),
        ("retired key, signed after rotation", a1, USCC_A, _day(8, 1), 11, None),
        ("active key", a2, USCC_A, _day(8, 1), 12, None),
        ("ES256 key, signed before compromise", b, USCC_B, _day(9, 1), 13, None),
        ("ES256 key, signed after compromise", b, USCC_B, _day(10, 15), 14, None),
        ("revoked", a2, USCC_A, _day(8, 2), 3, None),
        ("suspended", a2, USCC_A, _day(8, 3), 4, None),
        ("expired", a2, USCC_A, _day(8, 4), 15, _day(11, 15)),
    ]
    loaded = TrustBundle.load(bundle.sign(root), root.public_jwk(), NOW)
    verifier = Verifier.from_bundle(loaded, StatusList.load(status_token, root.public_jwk(), NOW))
    certificates = []
    for serial, (name, key, uscc, issued_at, index, valid_until) in enumerate(cases, start=1):
        certificate = Certificate(
            id=certificate_id(TYPE_CODE, uscc, f"2025{serial:08d}", 1),
            type_code=TYPE_CODE,
            type_name="营业执照",
            holder_kind="USCC",
            holder_value="91350100MA2XYZ0A1B",
            issuer_department=DEPARTMENTS[uscc],
            issuer_uscc=uscc,
            issued_at=issued_at,
            valid_from=issued_at,
            valid_until=valid_until or issued_at + timedelta(days=3650),
            version=1,
            fields={"name": "福州通办科技有限公司", "registered_capital": "100万元人民币"},
            status_list_index=index,
            status_list_uri=STATUS_URI,
        )
        token = certificate.sign(key)
        verdict = verifier.verify(token, now=NOW)
        certificates.append(
            {
                "name": name,
                "token": token,
                "claims": certificate.to_claims(),
                "expected": {check.name.value: check.passed for check in verdict.checks},
            }
        )
        print(f"{name}: valid={verdict.valid} {verdict.reasons}")

    bits = bytearray(131072 // 8)
    for index in BIT_ORDER_INDICES:
        bits[index >> 3] |= 0x80 >> (index & 7)
    vectors = {
        "now": format_rfc3339(NOW),
        "root_public_jwk": root.public_jwk(),
        "trust_bundle": bundle.sign(root),
        "status_list": status_token,
        "certificates": certificates,
        "bitstring": {
            "entries": 131072,
            "set_indices": BIT_ORDER_INDICES,
            "encoded_list": encode_bitstring(bits),
        },
        "check_names": [name.value for name in CheckName],
    }
    OUT.write_text(json.dumps(vectors, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
