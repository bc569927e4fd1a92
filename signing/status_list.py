"""Revocation and suspension bits for every certificate, in W3C Bitstring Status List style.

Each certificate has one `status_list_index`; the list keeps one bitstring per purpose
(revocation, suspension), each at least 131,072 bits (16 KiB; W3C Bitstring Status List
v1.0 §6.1 minimum, so one bit says little about which certificate it is). Bit order
follows the W3C spec: index 0 is the most significant bit of the first byte. Each
bitstring travels as `encodedList`: multibase base64url (`u` prefix, no padding) of the
GZIP-compressed bits. The whole list is signed by the hub root key as a JWS.

Signed payload (RFC 8785 canonical JSON)::

    {"size": 131072, "uri": "https://hub/status/1",
     "issued_at": "...Z", "next_update": "...Z", "expires": "...Z",
     "lists": {"revocation": "uH4sI...", "suspension": "uH4sI..."}}
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from domain.errors import FailedPrecondition, InvalidRequest
from signing import _root_signed
from signing.base64url import b64url_decode, b64url_encode
from signing.canonical import JSONObject
from signing.errors import MalformedDocument
from signing.jws import TYP_STATUS_LIST
from signing.keys import PublicKey, SigningKey
from signing.timestamps import format_rfc3339

MIN_ENTRIES = 131_072
MAX_ENTRIES = 1 << 27  # 16 MiB of bits per purpose: a bound on what a decoder accepts
_MULTIBASE_BASE64URL = "u"


class StatusPurpose(StrEnum):
    """What a set bit means (W3C `statusPurpose`)."""

    REVOCATION = "revocation"
    SUSPENSION = "suspension"


def encode_bitstring(bits: bytes | bytearray) -> str:
    """`u` + base64url(gzip(bits)), deterministic (gzip mtime 0)."""
    return _MULTIBASE_BASE64URL + b64url_encode(gzip.compress(bytes(bits), mtime=0))


def decode_bitstring(encoded: str, entries: int) -> bytearray:
    """Decode an `encodedList` that must hold exactly `entries` bits.

    Raises:
        MalformedDocument: not `u`-prefixed strict base64url, not one gzip member, or
            not exactly `entries / 8` bytes (decompression stops one byte past that,
            so a compression bomb costs nothing).
    """
    if not isinstance(encoded, str) or not encoded.startswith(_MULTIBASE_BASE64URL):
        raise MalformedDocument("status list: encodedList must be multibase base64url ('u...')")
    try:
        compressed = b64url_decode(encoded[1:])
    except ValueError as exc:
        raise MalformedDocument(f"status list: encodedList: {exc}") from None
    expected = entries // 8
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        bits = inflater.decompress(compressed, expected + 1)
    except zlib.error as exc:
        raise MalformedDocument(f"status list: encodedList is not gzip: {exc}") from None
    if len(bits) != expected or not inflater.eof or inflater.unused_data:
        raise MalformedDocument(
            f"status list: encodedList must hold exactly {expected} bytes in one gzip member"
        )
    return bytearray(bits)


def _check_size(entries: object) -> int:
    if type(entries) is not int or not MIN_ENTRIES <= entries <= MAX_ENTRIES or entries % 8:
        raise InvalidRequest("size", f"must be a multiple of 8 from {MIN_ENTRIES} to {MAX_ENTRIES}")
    return entries


class EntryStatus(NamedTuple):
    """The two bits of one certificate index."""

    revoked: bool
    suspended: bool


class StatusList:
    """Revocation and suspension bits, one of each per certificate index. Mutable.

    A list built here has no times; one returned by `load` carries the signed
    `issued_at`, `next_update` and `expires`. Revocation is permanent: a revocation
    bit, once set, cannot be cleared.
    """

    __slots__ = ("_revocation", "_suspension", "expires", "issued_at", "next_update", "size", "uri")

    def __init__(self, size: int = MIN_ENTRIES, *, uri: str | None = None) -> None:
        """An all-clear list of `size` entries.

        Raises:
            InvalidRequest: `size` is not a multiple of 8 within [131072, 2**27], or
                `uri` is an empty string.
        """
        self.size = _check_size(size)
        if uri is not None and (not isinstance(uri, str) or not uri):
            raise InvalidRequest("uri", "must be a non-empty string")
        self.uri = uri
        # Two attributes, not a dict keyed by the enum: Enum.__hash__ is Python code.
        self._revocation = bytearray(size // 8)
        self._suspension = bytearray(size // 8)
        self.issued_at: datetime | None = None
        self.next_update: datetime | None = None
        self.expires: datetime | None = None

    def get(self, index: int, purpose: StatusPurpose) -> bool:
        """Whether the `purpose` bit of `index` is set.

        Raises:
            InvalidRequest: `index` is outside the list.
        """
        self._check_index(index)
        return bool(self._bitstring(purpose)[index >> 3] & (0x80 >> (index & 7)))

    def status(self, index: int) -> EntryStatus:
        """Both bits of `index` at once.

        Raises:
            InvalidRequest: `index` is outside the list.
        """
        self._check_index(index)
        byte, mask = index >> 3, 0x80 >> (index & 7)
        return EntryStatus(bool(self._revocation[byte] & mask), bool(self._suspension[byte] & mask))

    def set(self, index: int, purpose: StatusPurpose) -> None:
        """Set the `purpose` bit of `index` (revoke or suspend).

        Raises:
            InvalidRequest: `index` is outside the list.
        """
        self._check_index(index)
        self._bitstring(purpose)[index >> 3] |= 0x80 >> (index & 7)

    def clear(self, index: int, purpose: StatusPurpose) -> None:
        """Clear the `purpose` bit of `index` (reinstate a suspended certificate).

        Raises:
            InvalidRequest: `index` is outside the list.
            FailedPrecondition: clearing a set revocation bit (revocation is final).
        """
        if purpose == StatusPurpose.REVOCATION and self.get(index, purpose):
            raise FailedPrecondition(f"certificate at index {index} is revoked; that is final")
        self._check_index(index)
        self._bitstring(purpose)[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF

    def bits(self, purpose: StatusPurpose) -> bytes:
        """A copy of the raw bitstring for `purpose`."""
        return bytes(self._bitstring(purpose))

    def encoded_list(self, purpose: StatusPurpose) -> str:
        """The W3C `encodedList` of `purpose`."""
        return encode_bitstring(self._bitstring(purpose))

    def to_payload(
        self, *, issued_at: datetime, next_update: datetime, expires: datetime
    ) -> JSONObject:
        """The JSON document `sign` signs (see the module docstring).

        Raises:
            MalformedDocument: the times are not issued_at <= next_update <= expires.
        """
        issued_at, next_update, expires = _root_signed.check_times(
            "status list", issued_at, next_update, expires
        )
        payload: JSONObject = {
            "size": self.size,
            "issued_at": format_rfc3339(issued_at),
            "next_update": format_rfc3339(next_update),
            "expires": format_rfc3339(expires),
            "lists": {purpose.value: self.encoded_list(purpose) for purpose in StatusPurpose},
        }
        if self.uri is not None:
            payload["uri"] = self.uri
        return payload

    def sign(
        self,
        root_key: SigningKey,
        *,
        issued_at: datetime,
        next_update: datetime,
        expires: datetime,
    ) -> str:
        """The list as a compact JWS (typ `tongban-status-list+jws`) signed by the root.

        Raises:
            MalformedDocument: the times are not issued_at <= next_update <= expires.
        """
        payload = self.to_payload(issued_at=issued_at, next_update=next_update, expires=expires)
        return _root_signed.sign_document(payload, root_key, typ=TYP_STATUS_LIST)

    @classmethod
    def from_payload(cls, payload: Mapping[str, object]) -> StatusList:
        """Read the document `to_payload` wrote (no signature involved).

        Raises:
            MalformedDocument: a member is missing or malformed.
        """
        kind = "status list"
        try:
            status_list = cls(_check_size(payload.get("size")), uri=_optional_uri(payload))
        except InvalidRequest as exc:
            raise MalformedDocument(f"{kind}: {exc.message}") from None
        lists = payload.get("lists")
        if not isinstance(lists, Mapping) or set(lists) != {p.value for p in StatusPurpose}:
            raise MalformedDocument(f"{kind}: 'lists' must have revocation and suspension")
        for purpose in StatusPurpose:
            encoded = lists[purpose.value]
            if not isinstance(encoded, str):
                raise MalformedDocument(f"{kind}: lists.{purpose.value} must be a string")
            bits = decode_bitstring(encoded, status_list.size)
            if purpose == StatusPurpose.REVOCATION:
                status_list._revocation = bits
            else:
                status_list._suspension = bits
        status_list.issued_at, status_list.next_update, status_list.expires = (
            _root_signed.check_times(
                kind,
                _root_signed.read_time(payload, "issued_at", kind),
                _root_signed.read_time(payload, "next_update", kind),
                _root_signed.read_time(payload, "expires", kind),
            )
        )
        return status_list

    @classmethod
    def load(
        cls,
        jws: str | bytes,
        root_public_jwk: PublicKey | Mapping[str, object],
        now: datetime,
        *,
        previous: StatusList | None = None,
    ) -> StatusList:
        """Verify a signed status list against the pinned root key and return it.

        Pass the list already held as `previous` to refuse an older one (a replay that
        could hide a revocation).

        Raises:
            MalformedToken: not a compact JWS of typ `tongban-status-list+jws`.
            SignatureInvalid: not signed by the pinned root key.
            MalformedDocument: signed, but the content is malformed.
            DocumentExpired: `now` is at or past the list's `expires`.
            DocumentRollback: older than `previous`.
            KeyMaterialError: `root_public_jwk` itself is not a usable public JWK.
            InvalidRequest: `now` is not timezone-aware.
        """
        kind = "status list"
        claims = _root_signed.open_document(jws, root_public_jwk, typ=TYP_STATUS_LIST, kind=kind)
        status_list = cls.from_payload(claims)
        assert status_list.issued_at is not None
        assert status_list.expires is not None
        _root_signed.check_fresh(
            kind,
            status_list.issued_at,
            status_list.expires,
            now,
            None if previous is None else previous.issued_at,
        )
        return status_list

    def _bitstring(self, purpose: StatusPurpose) -> bytearray:
        if purpose == StatusPurpose.REVOCATION:
            return self._revocation
        if purpose == StatusPurpose.SUSPENSION:
            return self._suspension
        raise InvalidRequest("purpose", "must be revocation or suspension")

    def _check_index(self, index: int) -> None:
        if type(index) is not int or not 0 <= index < self.size:
            raise InvalidRequest("status_list_index", f"must be from 0 to {self.size - 1}")

    def __repr__(self) -> str:
        return f"StatusList(size={self.size}, uri={self.uri!r}, issued_at={self.issued_at!r})"


def _optional_uri(payload: Mapping[str, object]) -> str | None:
    uri = payload.get("uri")
    if uri is None or isinstance(uri, str):
        return uri
    raise InvalidRequest("uri", "must be a string")
