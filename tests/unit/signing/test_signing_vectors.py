"""Tokens signed by an earlier build keep verifying (tests/assets/signing/vectors.json)."""

from __future__ import annotations

import pytest

from signing import (
    Certificate,
    CheckName,
    StatusList,
    TrustBundle,
    Verifier,
)
from signing.timestamps import parse_rfc3339


@pytest.fixture(scope="module")
def verifier(vectors: dict[str, object]) -> Verifier:
    now = parse_rfc3339(vectors["now"], "now")
    root = vectors["root_public_jwk"]
    assert isinstance(root, dict)
    assert "d" not in root  # public material only is checked in
    bundle = TrustBundle.load(str(vectors["trust_bundle"]), root, now)
    status_list = StatusList.load(str(vectors["status_list"]), root, now)
    return Verifier.from_bundle(bundle, status_list, clock=lambda: now)


def test_check_names_are_stable(vectors: dict[str, object]) -> None:
    assert vectors["check_names"] == [name.value for name in CheckName]


def test_vector_certificates_verify_as_recorded(
    vectors: dict[str, object], verifier: Verifier
) -> None:
    cases = vectors["certificates"]
    assert isinstance(cases, list)
    assert len(cases) == 8
    for case in cases:
        verdict = verifier.verify(case["token"])
        assert {c.name.value: c.passed for c in verdict.checks} == case["expected"], case["name"]
        assert verdict.certificate == Certificate.from_claims(case["claims"]), case["name"]
    assert sum(all(case["expected"].values()) for case in cases) == 3
