"""Department-signed records through the `grpc` adapter: verified on arrival, a forged or
unsigned record rejected with the reason, keys rotated and compromised like issuer keys."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.base import AdapterSpec
from adapters.factory import build_from_spec
from adapters.resilience import RetryPolicy
from domain.records import Purpose
from domain.subjects import KeyKind, parse_key
from signing.department import check_record_signature, open_department_keys, sign_department_keys
from signing.keys import generate
from signing.trust import KeyStatus, TrustedKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets" / "adapters"))
from grpc_department import SIGNED_AT, signing_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_grpc_adapter import Department, start_department

SEED = "11" * 32
RESIDENT = "population.resident"
PURPOSE = Purpose("BJ-2024-0004", "户籍迁移")
WANG = parse_key(KeyKind.ID_CARD, "11010519491231002X")
LI = parse_key(KeyKind.ID_CARD, "510107199901013337")
PSB = "11110000000013338W"


def trusted(**changes: object) -> TrustedKey:
    values: dict[str, object] = {
        "public_key": signing_key(SEED).public_key(),
        "issuer_department": "市公安局",
        "issuer_uscc": PSB,
        "not_before": datetime(2025, 1, 1, tzinfo=UTC),
        **changes,
    }
    return TrustedKey(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def signing_department() -> Iterator[Department]:
    started = start_department("--sign-seed", SEED, "--forge", "R5")
    yield started
    started.kill()


@pytest.fixture
async def fetch(signing_department: Department) -> AsyncIterator[object]:
    built = []

    async def run(subject, keys):  # type: ignore[no-untyped-def]
        adapter = build_from_spec(
            AdapterSpec(
                adapter_id="psb.population",
                kind="grpc",
                department="市公安局",
                department_uscc=PSB,
                serves={RESIDENT: frozenset({KeyKind.ID_CARD})},
                options={"target": signing_department.target},
                timeout=2.0,
                retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05),
                department_keys=tuple(keys),
            )
        )
        built.append(adapter)
        return await adapter.fetch(subject, [RESIDENT], PURPOSE)

    yield run
    for adapter in built:
        await adapter.close()


RETIRED, COMPROMISED = KeyStatus.RETIRED, KeyStatus.COMPROMISED
BEFORE, AFTER = datetime(2025, 6, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
KEY_TABLE = [  # the records were signed at 2026-01-01
    ("active key", {}, None),
    ("retired after signing", {"status": RETIRED, "not_after": AFTER}, None),
    ("retired before signing", {"status": RETIRED, "not_after": BEFORE}, "was retired"),
    ("compromised before", {"status": COMPROMISED, "compromised_since": BEFORE}, "compromised"),
    ("compromised after", {"status": COMPROMISED, "compromised_since": AFTER}, None),
]


@pytest.mark.parametrize(
    ("changes", "fault"), [t[1:] for t in KEY_TABLE], ids=[t[0] for t in KEY_TABLE]
)
async def test_signed_records_verify_by_key_lifecycle(fetch, changes, fault) -> None:  # type: ignore[no-untyped-def]
    result = await fetch(WANG, [trusted(**changes)])
    if fault is None:
        [record] = result.records
        assert record.signature
        assert check_record_signature(
            record.signature, [trusted()], record_type=RESIDENT, source_record_id="R1",
            subject=f"ID_CARD:{WANG.value}", fields=record.fields,
        ) is None  # fmt: skip
    else:
        assert not result.records
        reasons = [r.reason for r in result.rejected if r.source_record_id == "R1"]
        assert reasons
        assert fault in reasons[0]


async def test_a_forged_record_is_rejected_naming_why(fetch) -> None:  # type: ignore[no-untyped-def]
    result = await fetch(LI, [trusted()])
    assert not result.records
    [rejection] = result.rejected
    assert rejection.source_record_id == "R5"
    assert "other content than the record sent" in rejection.reason


async def test_a_signature_by_another_key_is_rejected(fetch) -> None:  # type: ignore[no-untyped-def]
    other = trusted(public_key=generate().public_key())
    result = await fetch(WANG, [other])
    assert not result.records
    assert "not a key of this department" in result.rejected[0].reason


async def test_without_department_keys_a_signature_is_not_passed_on(fetch) -> None:  # type: ignore[no-untyped-def]
    [record] = (await fetch(WANG, [])).records
    assert record.signature is None


def test_department_keys_document_round_trip() -> None:
    root = generate()
    token = sign_department_keys({"psb.population": [trusted()]}, root, SIGNED_AT)
    keys = open_department_keys(token, root.public_key())
    assert [k.kid for k in keys["psb.population"]] == [trusted().kid]
