"""The text inside a certificate's QR code: the compact token, or a hub URL when too long.

A token fits in a QR code up to `QR_MAX_TOKEN_LENGTH` characters (version 40, error
correction M, byte mode: 2,331 bytes per ISO/IEC 18004). Longer certificates are
printed as `<hub>/v/<short id>`, and the verifier fetches the token from the hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.errors import InvalidRequest

QR_MAX_TOKEN_LENGTH = 2331
_COMPACT_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)
_SHORT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}", re.ASCII)
_REFERENCE_PATH = re.compile(r"(?P<base>.*)/v/(?P<short_id>[^/]+)", re.ASCII)
# A usage copy's QR code links to the verification page with the copy's token itself.
_USAGE_COPY_PATH = re.compile(
    r"(?P<base>.*)/u/(?P<token>[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.ASCII
)


@dataclass(frozen=True, slots=True)
class QrToken:
    """The QR code holds the compact token itself: verify it offline."""

    token: str


@dataclass(frozen=True, slots=True)
class QrReference:
    """The QR code holds `<hub_url>/v/<short_id>`: fetch the token from the hub."""

    hub_url: str
    short_id: str


def qr_payload(
    token: str, hub_url: str, short_id: str, *, max_length: int = QR_MAX_TOKEN_LENGTH
) -> str:
    """The text to encode in the QR code: `token` if it fits, else `<hub_url>/v/<short_id>`.

    `short_id` is what the hub resolves at `/v/`: the certificate id.

    Raises:
        InvalidRequest: `hub_url` is not an http(s) URL, or `short_id` is not 1-128
            URL-safe characters (letters, digits, `.`, `_`, `~`, `-`).
    """
    if len(token) <= max_length:
        return token
    parts = urlsplit(hub_url)
    if parts.scheme not in {"https", "http"} or not parts.netloc or parts.query or parts.fragment:
        raise InvalidRequest("hub_url", "must be an http(s) URL without query or fragment")
    if not _SHORT_ID.fullmatch(short_id):
        raise InvalidRequest("short_id", "must be 1-128 URL-safe characters")
    return f"{hub_url.rstrip('/')}/v/{short_id}"


def parse_qr_text(text: str) -> QrToken | QrReference:
    """Tell which form scanned QR text is in; surrounding whitespace is ignored.

    A ``<hub>/u/<token>`` link (a usage copy's QR code) is read as the token it holds.

    Raises:
        InvalidRequest: (`qr_text`, rule) when it is neither a compact token nor an
            http(s) `<hub>/v/<short id>` URL.
    """
    text = text.strip()
    if _COMPACT_TOKEN.fullmatch(text):
        return QrToken(text)
    parts = urlsplit(text)
    linked = _USAGE_COPY_PATH.fullmatch(parts.path)
    if parts.scheme in {"https", "http"} and parts.netloc and linked is not None:
        return QrToken(linked["token"])
    match = _REFERENCE_PATH.fullmatch(parts.path)
    if (
        parts.scheme in {"https", "http"}
        and parts.netloc
        and not parts.query
        and not parts.fragment
        and match is not None
        and _SHORT_ID.fullmatch(match["short_id"])
    ):
        hub_url = f"{parts.scheme}://{parts.netloc}{match['base']}"
        return QrReference(hub_url=hub_url, short_id=match["short_id"])
    raise InvalidRequest("qr_text", "is neither a compact certificate token nor a <hub>/v/<id> URL")
