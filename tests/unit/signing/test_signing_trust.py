"""Issuer key lifecycle (KeyRing) and the root-signed trust bundle."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from signing_testkit import DAY, DEPARTMENT_A, FAR, NOW, T0, USCC_A, USCC_B, ring_with

from domain.errors import AlreadyExists, FailedPrecondition, InvalidRequest, NotFound
from signing import (
    TYP_TRUST_BUNDLE,
    DocumentExpired,
    DocumentRollback,
    KeyMaterialError,
    KeyRing,
    KeyStatus,
    MalformedDocument,
    MalformedToken,
    SignatureInvalid,
    SoftwareSigningKey,
    StatusList,
    TrustBundle,
    TrustedKey,
    generate,
    sign_compact,
)
from signing.base64url import b64url_encode

ROTATION = T0 + 180 * DAY


def test_activate_then_rotate() -> None:
    old, new = generate(), generate()
    ring = ring_with(old)
    assert ring.active_key(USCC_A).kid == old.kid
    rotated = ring.rotate(new, issuer_uscc=USCC_A, at=ROTATION)

    retired = rotated.get(old.kid)
    assert retired.status is KeyStatus.RETIRED
    assert retired.not_after == ROTATION
    assert retired.not_before == T0
    active = rotated.active_key(USCC_A)
    assert active.kid == new.kid
    assert active.not_before == ROTATION
    assert active.issuer_department == DEPARTMENT_A
    # Pure: the original ring is unchanged.
    assert ring.get(old.kid).status is KeyStatus.ACTIVE
    assert len(ring.keys) == 1


def test_compromise_keeps_the_earliest_time() -> None:
    key = generate()
    ring = ring_with(key).compromise(key.kid, since=T0 + 30 * DAY)
    assert ring.get(key.kid).status is KeyStatus.COMPROMISED
    assert ring.compromise(key.kid, since=T0 + 60 * DAY).get(key.kid).compromised_since == (
        T0 + 30 * DAY
    )
    assert ring.compromise(key.kid, since=T0 + 10 * DAY).get(key.kid).compromised_since == (
        T0 + 10 * DAY
    )


def test_compromising_a_retired_key_keeps_its_retirement() -> None:
    old, new = generate(), generate()
    ring = ring_with(old).rotate(new, issuer_uscc=USCC_A, at=ROTATION)
    marked = ring.compromise(old.kid, since=ROTATION - 30 * DAY).get(old.kid)
    assert marked.status is KeyStatus.COMPROMISED
    assert marked.not_after == ROTATION


def test_retire_without_successor() -> None:
    key = generate()
    ring = ring_with(key).retire(key.kid, at=ROTATION)
    assert ring.get(key.kid).status is KeyStatus.RETIRED
    with pytest.raises(NotFound):
        ring.active_key(USCC_A)
    # The issuer may start again with a fresh key.
    assert ring.activate(generate(), issuer_department="x", issuer_uscc=USCC_A, at=ROTATION)


@pytest.mark.parametrize(
    ("transition", "error"),
    [
        (
            lambda ring, key, new: ring.activate(
                key, issuer_department="d", issuer_uscc=USCC_B, at=T0
            ),
            AlreadyExists,
        ),
        (
            lambda ring, key, new: ring.activate(
                new, issuer_department="d", issuer_uscc=USCC_A, at=T0
            ),
            FailedPrecondition,
        ),
        (lambda ring, key, new: ring.rotate(new, issuer_uscc=USCC_B, at=ROTATION), NotFound),
        (lambda ring, key, new: ring.rotate(key, issuer_uscc=USCC_A, at=ROTATION), AlreadyExists),
        (
            lambda ring, key, new: ring.rotate(new, issuer_uscc=USCC_A, at=T0 - DAY),
            FailedPrecondition,
        ),
        (lambda ring, key, new: ring.retire(new.kid, at=ROTATION), NotFound),
        (lambda ring, key, new: ring.retire(key.kid, at=T0 - DAY), FailedPrecondition),
        (
            lambda ring, key, new: ring.retire(key.kid, at=ROTATION).retire(key.kid, at=ROTATION),
            FailedPrecondition,
        ),
        (lambda ring, key, new: ring.compromise(new.kid, since=T0), NotFound),
        (
            lambda ring, key, new: ring.activate(
                new, issuer_department="", issuer_uscc=USCC_B, at=T0
            ),
            InvalidRequest,
        ),
        (
            lambda ring, key, new: ring.activate(
                new, issuer_department="d", issuer_uscc="nope", at=T0
            ),
            InvalidRequest,
        ),
        (
            lambda ring, key, new: ring.activate(
                new, issuer_department="d", issuer_uscc=USCC_B, at=datetime(2025, 1, 1)
            ),
            InvalidRequest,
        ),
    ],
    ids=[
        "activate-known-key",
        "activate-second-active-key",
        "rotate-issuer-without-active-key",
        "rotate-to-known-key",
        "rotate-before-old-key-began",
        "retire-unknown-key",
        "retire-before-key-began",
        "retire-twice",
        "compromise-unknown-key",
        "empty-department",
        "bad-uscc",
        "naive-time",
    ],
)
def test_transitions_refuse(transition: Any, error: type[Exception]) -> None:
    key, new = generate(), generate()
    with pytest.raises(error):
        transition(ring_with(key), key, new)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": KeyStatus.RETIRED}, "not_after"),
        ({"status": KeyStatus.COMPROMISED}, "compromised_since"),
        ({"compromised_since": T0}, "compromised_since"),
        ({"not_after": T0 - DAY}, "not_after"),
        ({"issuer_uscc": "91350100M000100YI3"}, "issuer_uscc"),
        ({"issuer_department": " "}, "issuer_department"),
        ({"not_before": datetime(2025, 1, 1)}, "not_before"),
        ({"status": "lost"}, "status"),
    ],
)
def test_trusted_key_invariants(changes: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "public_key": generate().public_key(),
        "issuer_department": DEPARTMENT_A,
        "issuer_uscc": USCC_A,
        "not_before": T0,
        **changes,
    }
    with pytest.raises(InvalidRequest) as caught:
        TrustedKey(**values)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("state", "issued_at", "fault"),
    [
        ("active", T0, None),
        ("active", T0 - DAY, "before key"),
        ("retired", ROTATION, None),
        ("retired", ROTATION + DAY, "was retired"),
        ("compromised", ROTATION - DAY, None),
        ("compromised", ROTATION, "compromised since"),
        ("compromised", ROTATION + DAY, "compromised since"),
        ("planned-end", FAR + DAY, "stopped signing"),
    ],
)
def test_issue_fault(state: str, issued_at: datetime, fault: str | None) -> None:
    key = generate()
    ring = ring_with(key)
    if state == "retired":
        ring = ring.retire(key.kid, at=ROTATION)
    elif state == "compromised":
        ring = ring.compromise(key.kid, since=ROTATION)
    elif state == "planned-end":
        ring = KeyRing().activate(
            key, issuer_department=DEPARTMENT_A, issuer_uscc=USCC_A, at=T0, not_after=FAR
        )
    found = ring.get(key.kid).issue_fault(issued_at)
    if fault is None:
        assert found is None
    else:
        assert found is not None
        assert fault in found


def test_key_ring_round_trips_through_json() -> None:
    a1, a2, b = generate(), generate(), generate("ES256")
    ring = (
        ring_with(a1)
        .activate(b, issuer_department="北京", issuer_uscc=USCC_B, at=T0)
        .rotate(a2, issuer_uscc=USCC_A, at=ROTATION)
        .compromise(b.kid, since=ROTATION)
    )
    stored = json.loads(json.dumps(ring.to_dict(), ensure_ascii=False))
    assert KeyRing.from_dict(stored) == ring
    entry = next(k for k in stored["keys"] if k["kid"] == b.kid)
    assert entry["tongban_status"] == "compromised"
    assert entry["tongban_compromised_since"] == "2025-06-30T00:00:00Z"
    assert entry["tongban_issuer"] == USCC_B
    assert "d" not in entry


def test_rings_and_bundles_pickle() -> None:
    key = generate()
    ring = ring_with(key).compromise(key.kid, since=T0 + DAY)
    bundle = ring.bundle(issued_at=NOW, next_update=NOW, expires=FAR)
    assert pickle.loads(pickle.dumps(ring)) == ring
    assert pickle.loads(pickle.dumps(bundle)) == bundle
    assert pickle.loads(pickle.dumps(bundle)).get(ring.keys[0].kid) == ring.keys[0]


def test_key_ring_from_dict_refuses_broken_data() -> None:
    key = generate()
    entry = ring_with(key).keys[0].to_jwk()
    with pytest.raises(MalformedDocument, match="keys"):
        KeyRing.from_dict({"keys": "nope"})
    with pytest.raises(MalformedDocument, match=r"keys\[0\]"):
        KeyRing.from_dict({"keys": [{**entry, "tongban_status": "lost"}]})
    with pytest.raises(AlreadyExists):
        KeyRing.from_dict({"keys": [entry, entry]})
    other = generate().public_jwk()
    with pytest.raises(FailedPrecondition):
        KeyRing.from_dict({"keys": [entry, {**entry, **other}]})


# The signed bundle


def _bundle(root: SoftwareSigningKey, **times: datetime) -> tuple[TrustBundle, str]:
    ring = ring_with(generate())
    bundle = ring.bundle(
        issued_at=times.get("issued_at", NOW - DAY),
        next_update=times.get("next_update", NOW),
        expires=times.get("expires", NOW + 30 * DAY),
    )
    return bundle, bundle.sign(root)


def test_bundle_sign_and_load(root_key: SoftwareSigningKey) -> None:
    bundle, token = _bundle(root_key)
    loaded = TrustBundle.load(token, root_key.public_jwk(), NOW)
    assert loaded == bundle
    assert TrustBundle.load(token.encode() + b"\n", root_key.public_key(), NOW) == bundle
    key = bundle.keys[0]
    assert loaded.get(key.kid) == key
    assert loaded.get("unknown") is None
    assert loaded.needs_refresh(NOW)
    assert not loaded.needs_refresh(NOW - DAY / 2)


def test_bundle_payload_is_a_jwks(root_key: SoftwareSigningKey) -> None:
    bundle, _ = _bundle(root_key)
    jwks = bundle.to_jwks()
    assert set(jwks) == {"keys", "tongban_issued_at", "tongban_next_update", "tongban_expires"}
    entries = jwks["keys"]
    assert isinstance(entries, list)
    (entry,) = entries
    assert isinstance(entry, dict)
    standard = {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert {m for m in entry if not m.startswith("tongban_")} <= standard


def test_bundle_signed_by_another_key_is_refused(
    root_key: SoftwareSigningKey, other_key: SoftwareSigningKey
) -> None:
    _, token = _bundle(other_key)
    with pytest.raises(SignatureInvalid):
        TrustBundle.load(token, root_key.public_jwk(), NOW)


def test_bundle_with_a_forged_signature_is_refused(root_key: SoftwareSigningKey) -> None:
    bundle, token = _bundle(root_key)
    header, _, signature = token.split(".")
    widened = {**bundle.to_jwks(), "tongban_expires": "2099-01-01T00:00:00Z"}
    forged = f"{header}.{b64url_encode(json.dumps(widened).encode())}.{signature}"
    with pytest.raises(SignatureInvalid, match="does not verify"):
        TrustBundle.load(forged, root_key.public_jwk(), NOW)


@pytest.mark.parametrize("now", [NOW + 30 * DAY, NOW + 31 * DAY], ids=["at-expiry", "after"])
def test_expired_bundle_is_refused(root_key: SoftwareSigningKey, now: datetime) -> None:
    _, token = _bundle(root_key)
    with pytest.raises(DocumentExpired) as caught:
        TrustBundle.load(token, root_key.public_jwk(), now)
    assert caught.value.kind == "trust bundle"
    assert caught.value.expires == NOW + 30 * DAY


def test_older_bundle_is_refused_as_rollback(root_key: SoftwareSigningKey) -> None:
    _, old_token = _bundle(root_key, issued_at=NOW - 2 * DAY)
    held, _ = _bundle(root_key, issued_at=NOW - DAY)
    with pytest.raises(DocumentRollback):
        TrustBundle.load(old_token, root_key.public_jwk(), NOW, previous=held)
    TrustBundle.load(old_token, root_key.public_jwk(), NOW)


def test_a_status_list_is_not_a_bundle(root_key: SoftwareSigningKey) -> None:
    token = StatusList().sign(root_key, issued_at=NOW, next_update=NOW, expires=FAR)
    with pytest.raises(MalformedToken, match="typ"):
        TrustBundle.load(token, root_key.public_jwk(), NOW)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"keys": {}}, "'keys' must be a JSON array"),
        ({"keys": [1]}, r"keys\[0\] is not a JSON object"),
        ({"keys": [{"kty": "OKP"}], "tongban_issued_at": "x"}, r"keys\[0\]"),
        ({"keys": []}, "tongban_issued_at"),
        (
            {
                "keys": [],
                "tongban_issued_at": "2025-12-01T00:00:00Z",
                "tongban_next_update": "2025-11-01T00:00:00Z",
                "tongban_expires": "2026-01-01T00:00:00Z",
            },
            "issued_at <= next_update <= expires",
        ),
    ],
)
def test_signed_but_malformed_bundle_is_refused(
    root_key: SoftwareSigningKey, payload: dict[str, Any], message: str
) -> None:
    token = sign_compact(json.dumps(payload).encode(), root_key, typ=TYP_TRUST_BUNDLE)
    with pytest.raises(MalformedDocument, match=message):
        TrustBundle.load(token, root_key.public_jwk(), NOW)


def test_duplicate_kid_in_bundle_is_refused(root_key: SoftwareSigningKey) -> None:
    bundle, _ = _bundle(root_key)
    jwks = bundle.to_jwks()
    jwks["keys"] = [*jwks["keys"], *jwks["keys"]]  # type: ignore[misc]
    token = sign_compact(json.dumps(jwks).encode(), root_key, typ=TYP_TRUST_BUNDLE)
    with pytest.raises(MalformedDocument, match="twice"):
        TrustBundle.load(token, root_key.public_jwk(), NOW)


def test_a_bad_pinned_root_is_a_key_error(root_key: SoftwareSigningKey) -> None:
    _, token = _bundle(root_key)
    with pytest.raises(KeyMaterialError):
        TrustBundle.load(token, {"kty": "OKP", "crv": "Ed25519", "x": "short"}, NOW)


def test_load_needs_an_aware_now(root_key: SoftwareSigningKey) -> None:
    _, token = _bundle(root_key)
    with pytest.raises(InvalidRequest):
        TrustBundle.load(token, root_key.public_jwk(), datetime(2025, 12, 1))


def test_bundle_times_must_be_ordered() -> None:
    with pytest.raises(MalformedDocument):
        KeyRing().bundle(issued_at=NOW, next_update=NOW - DAY, expires=FAR)
    assert KeyRing().bundle(issued_at=NOW, next_update=NOW, expires=NOW).keys == ()


def test_bundle_times_are_utc() -> None:
    bundle = KeyRing().bundle(
        issued_at=datetime(2025, 12, 1, 8, tzinfo=UTC), next_update=NOW + DAY, expires=FAR
    )
    assert bundle.to_jwks()["tongban_issued_at"] == "2025-12-01T08:00:00Z"
