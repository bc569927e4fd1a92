"""RFC 3339 UTC timestamps at whole-second precision, as every signed Tongban document uses.

Whole seconds because JWT NumericDate claims (`iat`, `nbf`, `exp`) and the RFC 3339
strings beside them must say the same instant.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from domain.errors import InvalidRequest

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)


def utc_now() -> datetime:
    """The current time in UTC (the default verifier clock)."""
    return datetime.now(UTC)


def to_utc_second(value: datetime, field: str) -> datetime:
    """`value` in UTC with microseconds dropped.

    Raises:
        InvalidRequest: `value` is not a timezone-aware datetime.
    """
    if not isinstance(value, datetime):
        raise InvalidRequest(field, "must be a datetime")
    if value.tzinfo is UTC and value.microsecond == 0:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(field, "must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def format_rfc3339(value: datetime) -> str:
    """`2025-01-31T08:00:00Z` for an aware datetime (RFC 3339 §5.6, UTC, no fraction)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object, field: str) -> datetime:
    """Parse exactly `YYYY-MM-DDTHH:MM:SSZ` (the only form Tongban writes).

    Raises:
        InvalidRequest: `text` is not a string of that form or not a real instant.
    """
    if type(text) is not str or not RFC3339_UTC.fullmatch(text):
        raise InvalidRequest(field, "must be an RFC 3339 UTC time like 2025-01-31T08:00:00Z")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(field, f"not a valid time: {exc}") from exc
