"""Strict base64url without padding (RFC 7515 §2, RFC 4648 §5).

Strict means one encoding per byte string: only the URL-safe alphabet, no `=`, no
whitespace, and the unused low bits of the last character must be zero. Without the
last rule, `...Q` and `...R` decode to the same bytes, so a changed token character
could go unnoticed.
"""

from __future__ import annotations

import base64
import binascii

# `-_` become the standard `+/`; the standard `+/` and `=` become `!`, which the
# strict decoder refuses along with every other character outside the alphabet.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_VALUES = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
# Length mod 4 → (padding to add, mask of the last character's bits that carry no data).
_TAIL = {0: (b"", 0), 2: (b"==", 0b1111), 3: (b"=", 0b11)}


def b64url_encode(data: bytes) -> str:
    """base64url of `data` with the padding removed."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode strict unpadded base64url.

    Raises:
        ValueError: `text` is not the one canonical unpadded base64url form of some bytes.
    """
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("character outside the base64url alphabet") from None
    tail = _TAIL.get(len(data) % 4)
    if tail is None:
        raise ValueError("base64url length is impossible (4n+1)")
    padding, unused_bits = tail
    if unused_bits and _VALUES.get(data[-1], 0) & unused_bits:
        raise ValueError("non-zero trailing bits (not the canonical encoding)")
    try:
        return binascii.a2b_base64(data.translate(_TO_STANDARD) + padding, strict_mode=True)
    except binascii.Error:
        raise ValueError("character outside the base64url alphabet") from None
