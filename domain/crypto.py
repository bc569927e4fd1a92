"""The hub's two crypto suites and the one place a hash algorithm is chosen.

`CryptoSuite` is the hub-wide `[crypto] suite`: `international` (Ed25519 signatures,
SHA-256, AES-256-GCM) or `gm`, the Chinese national algorithms (SM2 signatures over
SM3, GB/T 32918; SM3 hashes, GB/T 32905; SM4-GCM sealing, GB/T 32907 with RFC 8998's
GCM use). `HashAlg` is what record content hashes and the audit chain take as a
parameter; every stored hash names its algorithm (``sha256:…``, ``sm3:…``), so a store
can switch suites without rewriting history.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from cryptography.hazmat.primitives import hashes

from domain.errors import InvalidRequest


class HashAlg(StrEnum):
    """A hash for content digests and hash chains; the value is the stored prefix."""

    SHA256 = "sha256"
    SM3 = "sm3"  # GB/T 32905-2016

    def digest(self, data: bytes) -> bytes:
        """The 32-byte digest of `data`."""
        if self is HashAlg.SHA256:
            return hashlib.sha256(data).digest()
        hasher = hashes.Hash(hashes.SM3())
        hasher.update(data)
        return hasher.finalize()

    def hexdigest(self, data: bytes) -> str:
        """The digest of `data` as lower-case hex."""
        if self is HashAlg.SHA256:
            return hashlib.sha256(data).hexdigest()
        return self.digest(data).hex()

    def tagged(self, data: bytes) -> str:
        """``<alg>:<hex>``, the self-describing form stored in rows."""
        return f"{self.value}:{self.hexdigest(data)}"

    @classmethod
    def of_tagged(cls, text: str) -> HashAlg:
        """The algorithm a ``<alg>:<hex>`` value was made with.

        Raises:
            InvalidRequest: no known algorithm prefix.
        """
        prefix, _, _ = text.partition(":")
        try:
            return cls(prefix)
        except ValueError:
            raise InvalidRequest("hash", f"unknown hash algorithm prefix {prefix!r}") from None


class CryptoSuite(StrEnum):
    """The hub-wide `[crypto] suite`."""

    INTERNATIONAL = "international"
    GM = "gm"

    @property
    def hash_alg(self) -> HashAlg:
        """SHA-256, or SM3 for the GM suite."""
        return HashAlg.SM3 if self is CryptoSuite.GM else HashAlg.SHA256

    @property
    def signing_alg(self) -> str:
        """The JWS `alg` of newly generated keys when `[signing] algorithm` is unset."""
        return "SM3withSM2" if self is CryptoSuite.GM else "EdDSA"

    @property
    def field_cipher(self) -> str:
        """The `$sealed` name of the AEAD that seals cached record fields."""
        return "SM4GCM" if self is CryptoSuite.GM else "A256GCM"
