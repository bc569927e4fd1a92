"""The one check of a field's value against its declared JSON type.

Record types (`[record_types]`) and certificate types (`[certificate_types]`) declare
their fields with these names, and both are checked here, by one rule per type. The
date rule is RFC 3339's: a ``date`` is a full-date (``2024-05-20``, a real calendar
day) and a ``datetime`` a date-time with its offset (``2024-05-20T09:30:00+08:00`` or
``…Z``): a time without an offset names no instant, so it is refused, not guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final, Literal

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime", "object", "array"]

_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)


def type_problem(kind: FieldType, value: Any) -> str | None:
    """What is wrong with `value` for a field of type `kind` (None: nothing)."""
    if kind == "string":
        return None if isinstance(value, str) else "must be a string"
    if kind == "integer":
        return None if type(value) is int else "must be an integer"
    if kind == "number":
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            return None
        return "must be a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "date":
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            return "must be a date like 2024-05-20"
        try:
            date.fromisoformat(value)
        except ValueError:
            return f"{value} is not a real date"
        return None
    if kind == "datetime":
        if not isinstance(value, str) or not _DATETIME.fullmatch(value):
            return "must be an RFC 3339 time with an offset, like 2024-05-20T09:30:00+08:00"
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"{value} is not a real time"
        return None
    if kind == "object":
        return None if isinstance(value, Mapping) else "must be an object"
    return None if isinstance(value, list | tuple) else "must be an array"
