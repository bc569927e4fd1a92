"""Record types the hub exchanges, and the check that a source's record fits its type."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from domain.records import MAX_SAFE_INTEGER, SourceRecord
from exchange.settings import RecordTypeSettings


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str) and len(value) == 10


def _is_datetime(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "date": _is_date,
    "datetime": _is_datetime,
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
}


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
            if expected and value is not None and not _TYPE_CHECKS[expected](value):
                return f"field {name!r} must be {expected}, got {type(value).__name__}"
        return _json_problem(record.fields, "fields")
