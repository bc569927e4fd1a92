"""Errors raised by the signing core, all inside the project's one error tree.

`domain.errors` is the root; these subclasses only add what a caller of `signing/`
needs to tell apart (a wrong passphrase from a malformed key file, an expired trust
bundle from a forged one).
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import InvalidRequest, TongbanError, VerificationError


class CanonicalizationError(InvalidRequest):
    """A value cannot be written as RFC 8785 canonical JSON, or bytes are not strict JSON.

    Examples: NaN, an integer beyond ±(2**53 − 1), a lone surrogate, a non-string
    object key, duplicate object members when parsing.
    """

    def __init__(self, rule: str, field: str = "json") -> None:
        super().__init__(field, rule)


class KeyMaterialError(TongbanError):
    """Key bytes or a JWK are malformed, of an unsupported type, or inconsistent."""


class WrongPassphrase(KeyMaterialError):
    """The passphrase does not decrypt the encrypted PKCS#8 key.

    PBES2 with AES-CBC has no integrity tag, so a corrupted ciphertext looks the same.
    """


class MalformedToken(VerificationError):
    """A JWS compact token breaks RFC 7515 or Tongban's stricter profile of it."""


class SignatureInvalid(VerificationError):
    """A signature does not verify under the key it names."""


class DocumentExpired(VerificationError):
    """A signed trust bundle or status list is past its `expires` time."""

    def __init__(self, kind: str, expires: datetime, now: datetime) -> None:
        super().__init__(
            f"{kind} expired at {expires.isoformat()} (now {now.isoformat()}); fetch a fresh one"
        )
        self.kind = kind
        self.expires = expires
        self.now = now


class DocumentRollback(VerificationError):
    """A signed document is older than one the caller already holds (a replay)."""


class MalformedDocument(VerificationError):
    """A signed trust bundle or status list verifies but its content breaks the format."""
