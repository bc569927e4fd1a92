"""The one page-token format of every listing the hub answers in pages.

A token is the unpadded base64url (`signing.base64url`) of a small JSON object naming
the listing and the position after which the next page starts; callers treat it as
opaque. Any token this hub did not make is `InvalidRequest` naming ``page_token``.
"""

from __future__ import annotations

import json
from typing import Any

from domain.errors import InvalidRequest
from signing.base64url import b64url_decode, b64url_encode

FIELD = "page_token"
_NOT_OURS = "is not a token this hub gave out"
MAX_TOKEN = 512


def encode_page_token(listing: str, position: dict[str, Any]) -> str:
    """An opaque token continuing `listing` after `position` (JSON values only)."""
    body = json.dumps({"l": listing, **position}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(body.encode())


def decode_page_token(token: str, listing: str) -> dict[str, Any] | None:
    """The position a token of `listing` stands for; None for the first page ("").

    Raises:
        InvalidRequest: (``page_token``, rule) for a token this hub did not make for
            this listing.
    """
    if not token:
        return None
    if len(token) > MAX_TOKEN:
        raise InvalidRequest(FIELD, _NOT_OURS)
    try:
        position = json.loads(b64url_decode(token))
    except ValueError as exc:
        raise InvalidRequest(FIELD, _NOT_OURS) from exc
    if not isinstance(position, dict) or position.pop("l", None) != listing:
        raise InvalidRequest(FIELD, _NOT_OURS)
    return position


def position_int(position: dict[str, Any], key: str) -> int:
    """A positive integer member of a decoded position. Raises `InvalidRequest`."""
    value = position.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(FIELD, _NOT_OURS)
    return value
