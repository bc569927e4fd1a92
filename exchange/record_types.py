"""Record types the hub exchanges, and the check that a source's record fits its type."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from domain.field_types import type_problem
from domain.records import MAX_SAFE_INTEGER, SourceRecord
from exchange.settings import RecordTypeSettings


def _json_problem(value: Any, path: str) -> str | None:
    """Why `value` cannot be canonical JSON (RFC 8785), or None; cheaper than encoding."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_SAFE_INTEGER else f"{path}: integer out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: {value} is not a JSON number"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: key {key!r} is not a string"
            problem = _json_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    return f"{path}: a {type(value).__name__} is not a JSON value"


class RecordTypes:
    """The declared record types; checks records against their field declarations."""

    def __init__(self, declared: Mapping[str, RecordTypeSettings]) -> None:
        self.declared = dict(declared)

    def __contains__(self, name: object) -> bool:
        return name in self.declared

    def problem(self, record: SourceRecord) -> str | None:
        """Why `record` does not fit its declared type, or None when it does.

        A type with no declared fields accepts any fields. Otherwise every field must be
        declared and hold its declared JSON type (or null); missing fields are allowed.
        Either way the fields must be representable as canonical JSON.
        """
        declared = self.declared.get(record.record_type)
        if declared is None:
            return f"record type {record.record_type!r} is not declared"
        if not isinstance(record.fields, Mapping):
            return "fields are not an object"
        for name, value in record.fields.items():
            expected = declared.fields.get(name)
            if expected is None and declared.fields:
                return f"field {name!r} is not declared for {record.record_type}"
            if expected and value is not None and type_problem(expected, value) is not None:
                return f"field {name!r} must be {expected}, got {type(value).__name__}"
        return _json_problem(record.fields, "fields")
