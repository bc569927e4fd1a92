"""The W3C-style bitstring status list: bit order, encoding, signing, loading."""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest
from signing_testkit import DAY, FAR, NOW, STATUS_URI

from domain.errors import FailedPrecondition, InvalidRequest
from signing import (
    MIN_ENTRIES,
    TYP_STATUS_LIST,
    DocumentExpired,
    DocumentRollback,
    KeyRing,
    MalformedDocument,
    MalformedToken,
    SignatureInvalid,
    SoftwareSigningKey,
    StatusList,
    StatusPurpose,
    decode_bitstring,
    sign_compact,
)
from signing.base64url import b64url_decode, b64url_encode

REVOKED, SUSPENDED = StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION


def test_default_list_has_131072_entries_of_one_bit() -> None:
    status_list = StatusList()
    assert status_list.size == MIN_ENTRIES == 131_072
    assert len(status_list.bits(REVOKED)) == len(status_list.bits(SUSPENDED)) == 16 * 1024
    assert not any(status_list.bits(REVOKED))


@pytest.mark.parametrize(
    ("index", "byte", "value"),
    [(0, 0, 0x80), (1, 0, 0x40), (7, 0, 0x01), (8, 1, 0x80), (13, 1, 0x04), (131071, 16383, 0x01)],
)
def test_bit_order_is_most_significant_bit_first(index: int, byte: int, value: int) -> None:
    # W3C Bitstring Status List: index 0 is the leftmost (most significant) bit of byte 0.
    status_list = StatusList()
    status_list.set(index, REVOKED)
    bits = status_list.bits(REVOKED)
    assert bits[byte] == value
    assert sum(bits) == value
    assert status_list.get(index, REVOKED)
    assert not status_list.get(index, SUSPENDED)


def test_purposes_are_separate_lists() -> None:
    status_list = StatusList()
    status_list.set(5, SUSPENDED)
    assert status_list.status(5) == (False, True)
    status_list.set(5, REVOKED)
    assert status_list.status(5) == (True, True)
    status_list.clear(5, SUSPENDED)
    assert status_list.status(5).revoked
    assert not status_list.status(5).suspended


def test_suspension_can_be_lifted_but_revocation_is_final() -> None:
    status_list = StatusList()
    status_list.set(9, SUSPENDED)
    status_list.clear(9, SUSPENDED)
    assert not status_list.get(9, SUSPENDED)
    status_list.clear(9, REVOKED)  # clearing a clear revocation bit is harmless
    status_list.set(9, REVOKED)
    with pytest.raises(FailedPrecondition, match="final"):
        status_list.clear(9, REVOKED)
    assert status_list.get(9, REVOKED)


@pytest.mark.parametrize("index", [-1, MIN_ENTRIES, True, 1.0])
def test_indices_outside_the_list_are_refused(index: object) -> None:
    status_list = StatusList()
    with pytest.raises(InvalidRequest) as caught:
        status_list.set(index, REVOKED)  # type: ignore[arg-type]
    assert caught.value.field == "status_list_index"
    with pytest.raises(InvalidRequest):
        status_list.get(index, REVOKED)  # type: ignore[arg-type]


def test_unknown_purpose_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="purpose"):
        StatusList().get(0, "expiry")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [MIN_ENTRIES - 8, MIN_ENTRIES + 1, 1 << 28, "131072"])
def test_sizes_are_checked(size: object) -> None:
    with pytest.raises(InvalidRequest):
        StatusList(size)  # type: ignore[arg-type]


def test_larger_lists_are_allowed() -> None:
    assert StatusList(MIN_ENTRIES * 4).size == 524_288


def test_encoded_list_is_multibase_base64url_of_gzip() -> None:
    status_list = StatusList()
    for index in (0, 42, 131071):
        status_list.set(index, REVOKED)
    encoded = status_list.encoded_list(REVOKED)
    assert encoded.startswith("u")
    assert "=" not in encoded
    # Decoded with nothing but the standard library, as any other verifier would.
    assert gzip.decompress(b64url_decode(encoded[1:])) == status_list.bits(REVOKED)
    assert decode_bitstring(encoded, MIN_ENTRIES) == status_list.bits(REVOKED)
    assert encoded == status_list.encoded_list(REVOKED)  # deterministic (gzip mtime 0)
    assert len(encoded) < 200  # a sparse list compresses to almost nothing


def _gzip_encoded(data: bytes) -> str:
    return "u" + b64url_encode(gzip.compress(data, mtime=0))


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b64url_encode(gzip.compress(bytes(16384))), "multibase"),
        ("u" + "!!!", "encodedList"),
        ("u" + b64url_encode(b"not gzip at all"), "not gzip"),
        (_gzip_encoded(bytes(16383)), "exactly 16384 bytes"),
        (_gzip_encoded(bytes(16385)), "exactly 16384 bytes"),
        (_gzip_encoded(bytes(16 * 1024 * 1024)), "exactly 16384 bytes"),
        (
            "u" + b64url_encode(gzip.compress(bytes(16384), mtime=0) + gzip.compress(b"", mtime=0)),
            "one gzip member",
        ),
        (_gzip_encoded(bytes(16384))[:-8], "encodedList|not gzip|exactly"),
    ],
    ids=["no-prefix", "bad-base64url", "not-gzip", "short", "long", "bomb", "two-members", "cut"],
)
def test_decode_refuses(encoded: str, message: str) -> None:
    with pytest.raises(MalformedDocument, match=message):
        decode_bitstring(encoded, MIN_ENTRIES)


def test_checked_in_bit_order_vector(vectors: dict[str, object]) -> None:
    vector = vectors["bitstring"]
    assert isinstance(vector, dict)
    bits = decode_bitstring(vector["encoded_list"], vector["entries"])
    set_indices = [i for i in range(vector["entries"]) if bits[i >> 3] & (0x80 >> (i & 7))]
    assert set_indices == vector["set_indices"] == [0, 7, 8, 9, 1000, 131071]
    assert bits[:2] == b"\x81\xc0"


# Signed lists


def _signed(root: SoftwareSigningKey, status_list: StatusList, **times: datetime) -> str:
    return status_list.sign(
        root,
        issued_at=times.get("issued_at", NOW - DAY),
        next_update=times.get("next_update", NOW),
        expires=times.get("expires", NOW + 7 * DAY),
    )


def test_sign_and_load(root_key: SoftwareSigningKey) -> None:
    status_list = StatusList(uri=STATUS_URI)
    status_list.set(3, REVOKED)
    status_list.set(4, SUSPENDED)
    loaded = StatusList.load(_signed(root_key, status_list), root_key.public_jwk(), NOW)
    assert loaded.status(3) == (True, False)
    assert loaded.status(4) == (False, True)
    assert loaded.status(5) == (False, False)
    assert loaded.uri == STATUS_URI
    assert loaded.issued_at == NOW - DAY
    assert loaded.next_update == NOW
    assert loaded.expires == NOW + 7 * DAY
    assert "StatusList(size=131072" in repr(loaded)


def test_signed_payload_layout(root_key: SoftwareSigningKey) -> None:
    payload = StatusList(uri=STATUS_URI).to_payload(issued_at=NOW, next_update=NOW, expires=FAR)
    assert set(payload) == {"size", "uri", "issued_at", "next_update", "expires", "lists"}
    assert set(payload["lists"]) == {"revocation", "suspension"}  # type: ignore[arg-type]


def test_list_signed_by_another_key_is_refused(
    root_key: SoftwareSigningKey, other_key: SoftwareSigningKey
) -> None:
    with pytest.raises(SignatureInvalid):
        StatusList.load(_signed(other_key, StatusList()), root_key.public_jwk(), NOW)


def test_forged_list_is_refused(root_key: SoftwareSigningKey) -> None:
    status_list = StatusList()
    status_list.set(3, REVOKED)
    header, _, signature = _signed(root_key, status_list).split(".")
    cleared = StatusList().to_payload(issued_at=NOW - DAY, next_update=NOW, expires=NOW + 7 * DAY)
    forged = f"{header}.{b64url_encode(json.dumps(cleared).encode())}.{signature}"
    with pytest.raises(SignatureInvalid):
        StatusList.load(forged, root_key.public_jwk(), NOW)


def test_expired_list_is_refused(root_key: SoftwareSigningKey) -> None:
    with pytest.raises(DocumentExpired) as caught:
        StatusList.load(_signed(root_key, StatusList()), root_key.public_jwk(), NOW + 7 * DAY)
    assert caught.value.kind == "status list"


def test_older_list_is_refused_as_rollback(root_key: SoftwareSigningKey) -> None:
    held = StatusList.load(_signed(root_key, StatusList()), root_key.public_jwk(), NOW)
    older = _signed(root_key, StatusList(), issued_at=NOW - 2 * DAY)
    with pytest.raises(DocumentRollback):
        StatusList.load(older, root_key.public_jwk(), NOW, previous=held)


def test_a_bundle_is_not_a_status_list(root_key: SoftwareSigningKey) -> None:
    token = KeyRing().bundle(issued_at=NOW, next_update=NOW, expires=FAR).sign(root_key)
    with pytest.raises(MalformedToken, match="typ"):
        StatusList.load(token, root_key.public_jwk(), NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": 100}, "size"),
        ({"uri": 5}, "uri"),
        ({"lists": {"revocation": "u"}}, "revocation and suspension"),
        ({"lists": {"revocation": 1, "suspension": 2}}, "must be a string"),
        ({"issued_at": "yesterday"}, "issued_at"),
    ],
)
def test_signed_but_malformed_list_is_refused(
    root_key: SoftwareSigningKey, change: dict[str, object], message: str
) -> None:
    payload = {
        **StatusList().to_payload(issued_at=NOW - DAY, next_update=NOW, expires=FAR),
        **change,
    }
    token = sign_compact(json.dumps(payload).encode(), root_key, typ=TYP_STATUS_LIST)
    with pytest.raises(MalformedDocument, match=message):
        StatusList.load(token, root_key.public_jwk(), NOW)


def test_sign_needs_ordered_times(root_key: SoftwareSigningKey) -> None:
    with pytest.raises(MalformedDocument):
        StatusList().sign(root_key, issued_at=NOW, next_update=NOW - DAY, expires=FAR)
