"""The verifier: one result per check, every failure reported, nothing passed unchecked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signing_testkit import (
    DAY,
    DEPARTMENT_B,
    FAR,
    NOW,
    T0,
    USCC_A,
    USCC_B,
    loaded_bundle,
    make_certificate,
    make_verifier,
    ring_with,
    signed_bundle,
)

from domain.errors import InvalidRequest, TongbanError, VerificationError
from signing import (
    DEFAULT_CHECKS,
    Algorithm,
    Certificate,
    CertificateInvalid,
    CheckName,
    KeyRing,
    SoftwareSigningKey,
    StatusList,
    StatusPurpose,
    Verdict,
    Verifier,
    generate,
)
from signing.base64url import b64url_decode, b64url_encode

ALL = list(CheckName)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def outcome(verdict: Verdict) -> dict[CheckName, bool]:
    return {check.name: check.passed for check in verdict.checks}


def passes_except(*failed: CheckName) -> dict[CheckName, bool]:
    return {name: name not in failed for name in CheckName}


@pytest.fixture
def world(any_issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey) -> tuple[Verifier, str]:
    verifier = make_verifier(ring_with(any_issuer_key), root_key, StatusList())
    return verifier, make_certificate().sign(any_issuer_key)


def test_a_good_certificate_passes_every_check_in_order(world: tuple[Verifier, str]) -> None:
    verifier, token = world
    verdict = verifier.verify(token)
    assert verdict.valid
    assert [check.name for check in verdict.checks] == ALL
    assert all(check.passed for check in verdict.checks)
    assert verdict.reasons == ()
    assert verdict.failures == ()
    assert verdict.certificate == make_certificate()
    assert verifier.verify_or_raise(token) == make_certificate()
    assert verdict.result(CheckName.SIGNATURE).passed


def test_now_can_be_given(world: tuple[Verifier, str]) -> None:
    verifier, token = world
    assert not verifier.verify(token, now=FAR).valid
    with pytest.raises(InvalidRequest):
        verifier.verify(token, now=datetime(2025, 12, 1))


def _tamperings(token: str) -> list[str]:
    """Every single-character change, truncation, insertion and extra part."""
    variants = []
    for position, character in enumerate(token):
        if character == ".":
            variants.append(token[:position] + "A" + token[position + 1 :])
            continue
        value = B64URL.index(character)
        # value ^ 1 flips the lowest bit, which hides in the unused bits of a last
        # character; value ^ 32 flips the highest.
        for other in {value ^ 1, value ^ 32}:
            variants.append(token[:position] + B64URL[other] + token[position + 1 :])
    variants += [token[:length] for length in range(len(token))]
    variants += [token[:position] + "A" + token[position:] for position in range(len(token) + 1)]
    header, payload, signature = token.split(".")
    variants += [
        token + ".",
        token + ".AAAA",
        "." + token,
        f"{header}.{payload}.{signature}.{signature}",
        f"{header}.{header}.{payload}.{signature}",
        f"{header}..{signature}",
        f"{header}.{payload}.",
        f"{header}.{payload}",
        token + "\n",
        " " + token,
    ]
    return variants


def test_every_change_to_a_token_fails_verification(world: tuple[Verifier, str]) -> None:
    verifier, token = world
    variants = _tamperings(token)
    assert len(variants) > 4 * len(token)
    for variant in variants:
        assert variant != token
        verdict = verifier.verify(variant)
        assert not verdict.valid, variant
        assert (
            not verdict.result(CheckName.INTEGRITY).passed
            or not verdict.result(CheckName.SIGNATURE).passed
        ), variant
        with pytest.raises(CertificateInvalid):
            verifier.verify_or_raise(variant)


def test_payload_reencoded_with_other_json_fails(world: tuple[Verifier, str]) -> None:
    verifier, token = world
    header, payload, signature = token.split(".")
    spaced = json.dumps(json.loads(b64url_decode(payload)), ensure_ascii=False, indent=1)
    verdict = verifier.verify(f"{header}.{b64url_encode(spaced.encode())}.{signature}")
    assert outcome(verdict) == passes_except(*ALL[1:])
    # Content is never judged on an unverified signature.
    for check in verdict.checks[2:]:
        assert check.reason == "not checked: SIGNATURE failed"


def test_integrity_failure_leaves_everything_else_not_checked(world: tuple[Verifier, str]) -> None:
    verifier, _ = world
    verdict = verifier.verify("not a token")
    assert verdict.certificate is None
    assert [c.passed for c in verdict.checks] == [False] * 6
    assert verdict.checks[0].reason.startswith("compact JWS has 3 parts")
    for check in verdict.checks[1:]:
        assert check.reason == "not checked: INTEGRITY failed"
    assert verdict.reasons[1] == "SIGNATURE: not checked: INTEGRITY failed"


def test_token_that_is_not_text_is_invalid(world: tuple[Verifier, str]) -> None:
    verifier, token = world
    assert not verifier.verify(token.encode()).valid  # type: ignore[arg-type]


def test_claims_that_are_not_a_certificate_fail_integrity(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    from signing import TYP_CERTIFICATE, sign_compact

    verifier = make_verifier(ring_with(issuer_key), root_key, StatusList())
    claims = make_certificate().to_claims()
    claims["version"] = "one"
    token = sign_compact(json.dumps(claims).encode(), issuer_key, typ=TYP_CERTIFICATE)
    verdict = verifier.verify(token)
    assert verdict.checks[0].reason == "certificate claims: version: must be a JSON integer"


def test_other_signed_documents_are_not_certificates(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    verifier = make_verifier(ring_with(issuer_key), root_key, StatusList())
    verdict = verifier.verify(signed_bundle(ring_with(issuer_key), issuer_key))
    assert "typ 'tongban-trust-bundle+jws'" in verdict.checks[0].reason


def test_unknown_key(root_key: SoftwareSigningKey, other_key: SoftwareSigningKey) -> None:
    verifier = make_verifier(ring_with(generate()), root_key, StatusList())
    verdict = verifier.verify(make_certificate().sign(other_key))
    assert outcome(verdict) == passes_except(*ALL[1:])
    assert verdict.reasons == (
        f"SIGNATURE: key {other_key.kid} is not in the trust bundle",
        "ISSUER_TRUSTED: not checked: SIGNATURE failed",
        "KEY_VALID_AT_ISSUE: not checked: SIGNATURE failed",
        "STATUS: not checked: SIGNATURE failed",
        "VALIDITY_WINDOW: not checked: SIGNATURE failed",
    )


def test_key_of_another_issuer(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    verifier = make_verifier(ring_with(issuer_key, issuer_uscc=USCC_B), root_key, StatusList())
    verdict = verifier.verify(make_certificate(issuer_uscc=USCC_A).sign(issuer_key))
    assert outcome(verdict) == {
        **passes_except(CheckName.ISSUER_TRUSTED, CheckName.KEY_VALID_AT_ISSUE)
    }
    assert f"belongs to issuer {USCC_B}" in verdict.result(CheckName.ISSUER_TRUSTED).reason
    assert verdict.result(CheckName.KEY_VALID_AT_ISSUE).reason == (
        "not checked: ISSUER_TRUSTED failed"
    )


def test_header_alg_must_be_the_keys(
    issuer_key: SoftwareSigningKey, es256_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    # An ES256 signature presented under the kid of an Ed25519 key.
    verifier = make_verifier(ring_with(issuer_key), root_key, StatusList())

    @dataclass
    class Impostor:
        kid: str = issuer_key.kid
        alg: Algorithm = Algorithm.ES256

        def public_jwk(self) -> dict[str, str]:
            return es256_key.public_jwk()

        def sign(self, data: bytes) -> bytes:
            return es256_key.sign(data)

    verdict = verifier.verify(make_certificate().sign(Impostor()))
    assert "header alg ES256" in verdict.result(CheckName.SIGNATURE).reason
    assert not verdict.valid


@pytest.mark.parametrize(
    ("revoked", "suspended", "reason"),
    [
        (True, False, "certificate is revoked or superseded (status index 7)"),
        (False, True, "certificate is suspended (status index 7)"),
        (True, True, "certificate is revoked or superseded and suspended (status index 7)"),
    ],
)
def test_status(
    issuer_key: SoftwareSigningKey,
    root_key: SoftwareSigningKey,
    revoked: bool,
    suspended: bool,
    reason: str,
) -> None:
    status_list = StatusList()
    if revoked:
        status_list.set(7, StatusPurpose.REVOCATION)
    if suspended:
        status_list.set(7, StatusPurpose.SUSPENSION)
    token = make_certificate(status_list_index=7).sign(issuer_key)
    verdict = make_verifier(ring_with(issuer_key), root_key, status_list).verify(token)
    assert outcome(verdict) == passes_except(CheckName.STATUS)
    assert verdict.result(CheckName.STATUS).reason == reason


def test_reinstated_certificate_passes_again(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    status_list = StatusList()
    token = make_certificate(status_list_index=7).sign(issuer_key)
    status_list.set(7, StatusPurpose.SUSPENSION)
    assert not make_verifier(ring_with(issuer_key), root_key, status_list).verify(token).valid
    status_list.clear(7, StatusPurpose.SUSPENSION)
    assert make_verifier(ring_with(issuer_key), root_key, status_list).verify(token).valid


def test_other_indices_do_not_matter(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    status_list = StatusList()
    for index in (6, 8, 0, 131071):
        status_list.set(index, StatusPurpose.REVOCATION)
        status_list.set(index, StatusPurpose.SUSPENSION)
    token = make_certificate(status_list_index=7).sign(issuer_key)
    assert make_verifier(ring_with(issuer_key), root_key, status_list).verify(token).valid


@pytest.mark.parametrize(
    ("certificate", "status_list", "status_expires", "reason"),
    [
        (make_certificate(), None, FAR, "no status list loaded"),
        (make_certificate(), StatusList(), NOW, "status list expired at 2025-12-01T00:00:00Z"),
        (
            make_certificate(status_list_uri="https://elsewhere/1"),
            StatusList(uri="https://hub.example.gov.cn/status/1"),
            FAR,
            "https://elsewhere/1",
        ),
        (make_certificate(status_list_index=131072), StatusList(), FAR, "outside the status list"),
    ],
    ids=["no-list", "expired-list", "other-list", "index-beyond-list"],
)
def test_status_cannot_be_established(
    issuer_key: SoftwareSigningKey,
    root_key: SoftwareSigningKey,
    certificate: Certificate,
    status_list: StatusList | None,
    status_expires: datetime,
    reason: str,
) -> None:
    verifier = make_verifier(
        ring_with(issuer_key), root_key, status_list, status_expires=status_expires
    )
    verdict = verifier.verify(certificate.sign(issuer_key))
    assert outcome(verdict) == passes_except(CheckName.STATUS)
    assert reason in verdict.result(CheckName.STATUS).reason


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "reason"),
    [
        (T0 + 10 * DAY, NOW, "expired at 2025-12-01T00:00:00Z"),
        (T0 + 10 * DAY, NOW - DAY, "expired at 2025-11-30T00:00:00Z"),
        (NOW + DAY, FAR, "not valid before 2025-12-02T00:00:00Z"),
    ],
    ids=["expires-now", "expired", "not-yet-valid"],
)
def test_validity_window(
    issuer_key: SoftwareSigningKey,
    root_key: SoftwareSigningKey,
    valid_from: datetime,
    valid_until: datetime,
    reason: str,
) -> None:
    certificate = make_certificate(valid_from=valid_from, valid_until=valid_until)
    verdict = make_verifier(ring_with(issuer_key), root_key, StatusList()).verify(
        certificate.sign(issuer_key)
    )
    assert outcome(verdict) == passes_except(CheckName.VALIDITY_WINDOW)
    assert verdict.result(CheckName.VALIDITY_WINDOW).reason == reason


def test_validity_window_boundaries(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    verifier = make_verifier(ring_with(issuer_key), root_key, StatusList())
    token = make_certificate(valid_from=NOW, valid_until=NOW + DAY).sign(issuer_key)
    assert verifier.verify(token, now=NOW).valid
    assert not verifier.verify(token, now=NOW - DAY / 86400).valid
    assert not verifier.verify(token, now=NOW + DAY).valid
    assert (
        make_verifier(ring_with(issuer_key), root_key, StatusList())
        .verify(make_certificate(valid_until=None).sign(issuer_key))
        .valid
    )


def test_expired_trust_bundle_fails_issuer_trusted(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    verifier = make_verifier(ring_with(issuer_key), root_key, StatusList(), bundle_expires=NOW)
    verdict = verifier.verify(make_certificate().sign(issuer_key))
    assert outcome(verdict) == passes_except(CheckName.ISSUER_TRUSTED, CheckName.KEY_VALID_AT_ISSUE)
    assert "trust bundle expired" in verdict.result(CheckName.ISSUER_TRUSTED).reason


def test_every_failure_is_reported_at_once(root_key: SoftwareSigningKey) -> None:
    old, new = generate(), generate()
    ring = ring_with(old).rotate(new, issuer_uscc=USCC_A, at=T0 + 100 * DAY)
    status_list = StatusList()
    status_list.set(7, StatusPurpose.REVOCATION)
    certificate = make_certificate(issued_at=T0 + 200 * DAY, valid_until=T0 + 300 * DAY)
    verdict = make_verifier(ring, root_key, status_list).verify(certificate.sign(old))
    assert outcome(verdict) == passes_except(
        CheckName.KEY_VALID_AT_ISSUE, CheckName.STATUS, CheckName.VALIDITY_WINDOW
    )
    assert len(verdict.reasons) == 3
    with pytest.raises(CertificateInvalid) as caught:
        make_verifier(ring, root_key, status_list).verify_or_raise(certificate.sign(old))
    assert caught.value.verdict.reasons == verdict.reasons
    assert isinstance(caught.value, VerificationError)
    assert isinstance(caught.value, TongbanError)
    for reason in verdict.reasons:
        assert reason in caught.value.message


# Rotation and compromise. Timeline: A active from T0; rotated to B at ROTATION;
# B compromised at COMPROMISE (and, in one row, A compromised at A_COMPROMISE < ROTATION).
ROTATION = T0 + 180 * DAY
COMPROMISE = T0 + 270 * DAY
A_COMPROMISE = ROTATION - 30 * DAY
KEY_FAILS = passes_except(CheckName.KEY_VALID_AT_ISSUE)
VALID = passes_except()
ROTATION_TABLE = [
    # (scenario, signer, state of the ring, issued_at, expected per-check outcome)
    ("active key", "A", "A active", T0 + DAY, VALID),
    ("active key, at its first instant", "A", "A active", T0, VALID),
    ("active key, backdated before activation", "A", "A active", T0 - DAY, KEY_FAILS),
    ("retired key, signed while active", "A", "rotated", ROTATION - DAY, VALID),
    ("retired key, signed at the rotation instant", "A", "rotated", ROTATION, VALID),
    ("retired key, signed after retirement", "A", "rotated", ROTATION + DAY, KEY_FAILS),
    ("new key, signed after rotation", "B", "rotated", ROTATION + DAY, VALID),
    ("new key, backdated before its activation", "B", "rotated", ROTATION - DAY, KEY_FAILS),
    ("compromised key, signed before T", "B", "B compromised", COMPROMISE - DAY, VALID),
    ("compromised key, signed at T", "B", "B compromised", COMPROMISE, KEY_FAILS),
    ("compromised key, signed after T", "B", "B compromised", COMPROMISE + DAY, KEY_FAILS),
    ("retired then compromised, before T", "A", "A compromised", A_COMPROMISE - DAY, VALID),
    ("retired then compromised, after T", "A", "A compromised", A_COMPROMISE + DAY, KEY_FAILS),
    ("key not in the bundle", "C", "rotated", ROTATION + DAY, passes_except(*ALL[1:])),
    (
        "key of another issuer",
        "D",
        "rotated",
        ROTATION + DAY,
        passes_except(CheckName.ISSUER_TRUSTED, CheckName.KEY_VALID_AT_ISSUE),
    ),
]


@pytest.mark.parametrize(
    ("scenario", "signer", "state", "issued_at", "expected"),
    ROTATION_TABLE,
    ids=[row[0] for row in ROTATION_TABLE],
)
def test_rotation_and_compromise(
    root_key: SoftwareSigningKey,
    scenario: str,
    signer: str,
    state: str,
    issued_at: datetime,
    expected: dict[CheckName, bool],
) -> None:
    keys = {name: generate() for name in "ABCD"}
    ring: KeyRing = ring_with(keys["A"]).activate(
        keys["D"], issuer_department=DEPARTMENT_B, issuer_uscc=USCC_B, at=T0 - 10 * DAY
    )
    if state != "A active":
        ring = ring.rotate(keys["B"], issuer_uscc=USCC_A, at=ROTATION)
    if state == "B compromised":
        ring = ring.compromise(keys["B"].kid, since=COMPROMISE)
    if state == "A compromised":
        ring = ring.compromise(keys["A"].kid, since=A_COMPROMISE)
    certificate = make_certificate(issued_at=issued_at)
    verdict = make_verifier(ring, root_key, StatusList()).verify(certificate.sign(keys[signer]))
    assert outcome(verdict) == expected, verdict.reasons
    assert verdict.valid == all(expected.values())


def test_custom_policy_runs_the_checks_it_is_given(
    issuer_key: SoftwareSigningKey, root_key: SoftwareSigningKey
) -> None:
    default = make_verifier(ring_with(issuer_key), root_key, None)
    without_status = Verifier(
        loaded_bundle(ring_with(issuer_key), root_key),
        None,
        clock=lambda: NOW,
        checks=[c for c in DEFAULT_CHECKS if c.name is not CheckName.STATUS],
    )
    token = make_certificate().sign(issuer_key)
    assert not default.verify(token).valid
    verdict = without_status.verify(token)
    assert verdict.valid
    assert CheckName.STATUS not in outcome(verdict)
    with pytest.raises(KeyError):
        verdict.result(CheckName.STATUS)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    verdict = _fuzz_verifier().verify(text)
    assert not verdict.valid


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=B64URL, max_size=120), min_size=3, max_size=3))
def test_arbitrary_three_part_tokens_never_raise(parts: list[str]) -> None:
    assert not _fuzz_verifier().verify(".".join(parts)).valid


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "version", "fields", "issued_at", "valid_from", "iat", "nbf", "exp"]
        ),
        st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers(), max_size=2),
    )
)
def test_arbitrary_signed_claims_never_raise(changes: dict[str, object]) -> None:
    from signing import TYP_CERTIFICATE, sign_compact

    claims = {**make_certificate().to_claims(), **changes}
    token = sign_compact(json.dumps(claims).encode(), _FUZZ_KEY, typ=TYP_CERTIFICATE)
    verdict = _fuzz_verifier().verify(token)
    assert [c.name for c in verdict.checks] == ALL


_FUZZ_KEY = generate()
_FUZZ_ROOT = generate()
_FUZZ: list[Verifier] = []


def _fuzz_verifier() -> Verifier:
    if not _FUZZ:
        _FUZZ.append(make_verifier(ring_with(_FUZZ_KEY), _FUZZ_ROOT, StatusList()))
    return _FUZZ[0]
