"""Domain objects for records exchanged between department sources and hall platforms.

These are the frozen values that adapters return, the store keeps and the services
translate to protobuf. ORM rows and protobuf messages never travel past their boundary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import rfc8785

from domain.crypto import HashAlg
from domain.errors import InvalidRequest
from domain.subjects import SubjectKey

JsonValue = Any
"""A value that JSON can represent (the record field maps are JSON objects)."""

MAX_CASE_ID = 64
MAX_REASON = 500


@dataclass(frozen=True)
class Purpose:
    """Why data is asked for: the hall's case id and the reason in words."""

    case_id: str
    reason: str

    @classmethod
    def checked(cls, case_id: str, reason: str, *, field_prefix: str = "purpose") -> Purpose:
        """Build a purpose, raising `InvalidRequest` naming the field when one is missing."""
        case_id, reason = case_id.strip(), reason.strip()
        if not case_id:
            raise InvalidRequest(
                f"{field_prefix}.case_id", "a case id is required for every lookup"
            )
        if len(case_id) > MAX_CASE_ID:
            raise InvalidRequest(f"{field_prefix}.case_id", f"at most {MAX_CASE_ID} characters")
        if not reason:
            raise InvalidRequest(f"{field_prefix}.reason", "a reason is required for every lookup")
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"{field_prefix}.reason", f"at most {MAX_REASON} characters")
        return cls(case_id, reason)


@dataclass(frozen=True)
class SourceRecord:
    """A record as a department source returns it, fields already named per its type."""

    record_type: str
    source_record_id: str
    subject: SubjectKey
    fields: Mapping[str, JsonValue]
    related_subjects: tuple[SubjectKey, ...] = ()
    updated_at: datetime | None = None
    # The department's own JWS over the record (`signing.department`), when it signs.
    signature: str | None = None


@dataclass(frozen=True)
class StoredRecord:
    """A record as the hub holds it: the source's record plus provenance."""

    record_type: str
    subject: SubjectKey
    fields: Mapping[str, JsonValue]
    adapter_id: str
    department: str
    source_record_id: str
    fetched_at: datetime
    content_hash: str
    related_subjects: tuple[SubjectKey, ...] = field(default=())
    # The department's signature, verified on arrival, kept and passed on unchanged.
    department_signature: str | None = None

    @classmethod
    def of(
        cls,
        record: SourceRecord,
        *,
        adapter_id: str,
        department: str,
        fetched_at: datetime,
        hash_alg: HashAlg = HashAlg.SHA256,
    ) -> StoredRecord:
        """`record` with its provenance. Raises `InvalidRequest` for non-JSON fields."""
        fields = dict(record.fields)
        return cls(
            record_type=record.record_type,
            subject=record.subject,
            fields=fields,
            adapter_id=adapter_id,
            department=department,
            source_record_id=record.source_record_id,
            fetched_at=fetched_at,
            content_hash=content_hash(fields, hash_alg),
            related_subjects=tuple(record.related_subjects),
            department_signature=record.signature,
        )

    def disclosed(self, fields: Mapping[str, JsonValue]) -> StoredRecord:
        """This record as one caller receives it: only `fields`, hashed over those alone.

        The one rule for every content hash that leaves the hub (answers, receipts):
        it covers exactly the fields the receiver was given, so a hash can never be
        used to guess a field that minimization removed (issue 17 §1). With every
        field disclosed it equals the stored hash.
        """
        shown = dict(fields)
        if shown == dict(self.fields):
            return self
        return replace(self, fields=shown, content_hash=content_hash(shown))


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON of `value`. Raises `InvalidRequest` if impossible.

    Values without floats whose object keys are all in the Basic Multilingual Plane
    take a fast path through the C JSON encoder, whose output is then byte-for-byte
    what JCS prescribes: keys sorted by code point (= UTF-16 code unit order within
    the BMP), the same string escapes, integers written as-is. Everything else goes
    through the `rfc8785` reference implementation.
    """
    if _fast_path_ok(value):
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        ).encode()
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidRequest("fields", f"not representable as canonical JSON: {exc}") from exc


# RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles; larger integers are not canonical.
MAX_SAFE_INTEGER = 2**53 - 1


def _fast_path_ok(value: Any) -> bool:
    if isinstance(value, str):
        return not _has_lone_surrogate(value)
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INTEGER
    if isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(key, str) and (key.isascii() or _bmp_only(key))):
                return False
            if not _fast_path_ok(item):
                return False
        return True
    if isinstance(value, list):
        return all(map(_fast_path_ok, value))
    return False


# A surrogate code point in a str is always unpaired: JSON cannot carry it as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Object keys beyond the BMP sort differently by code point and by UTF-16 code unit.
_SURROGATE_OR_ASTRAL = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")


def _bmp_only(text: str) -> bool:
    return _SURROGATE_OR_ASTRAL.search(text) is None


def _has_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def content_hash(fields: Mapping[str, JsonValue], alg: HashAlg = HashAlg.SHA256) -> str:
    """Return ``<alg>:<hex>`` (``sha256:…`` or ``sm3:…``) over the RFC 8785 canonical
    JSON of `fields`; the prefix says which hash each stored row used.

    Raises `InvalidRequest` when the fields cannot be represented as canonical JSON.
    """
    return alg.tagged(canonical_json(dict(fields)))
