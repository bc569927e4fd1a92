"""Encryption at rest of cached record fields: AES-256-GCM or SM4-GCM, with a key ring.

A sealed field map is stored as ``{"$sealed": "A256GCM", "kid": …, "iv": …, "ct": …}``
(or ``"SM4GCM"`` under the GM suite) in place of the fields. Each row names its cipher,
so switching `[crypto] suite` re-seals rows lazily and never rewrites history.
SM4-GCM (GB/T 32907 in GCM mode, as RFC 8998 uses it) keys are derived from the
configured 32-byte key: HKDF-SM3 (RFC 5869 with SM3) to 16 bytes.
The additional authenticated data binds the ciphertext to its
record (adapter, record type, source record id), so sealed fields cannot be moved to
another row unnoticed. Keys rotate lazily: rows sealed under an older key (or stored
before encryption was switched on) are re-sealed under the active key when read.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.errors import ConfigError, StoreError

SEALED = "$sealed"
ALGORITHM = "A256GCM"
SM4_GCM = "SM4GCM"
CIPHERS = (ALGORITHM, SM4_GCM)
KEY_BYTES = 32
_TAG_BYTES = 16


class Sm4Gcm:
    """SM4 in GCM mode with AESGCM's interface (ciphertext || 16-byte tag)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, iv: bytes, plain: bytes, aad: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(self._key), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(aad)
        body = encryptor.update(plain) + encryptor.finalize()
        return body + encryptor.tag

    def decrypt(self, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < _TAG_BYTES:
            raise InvalidTag
        body, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(self._key), modes.GCM(iv, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(body) + decryptor.finalize()


def _sm4_key(key: bytes) -> bytes:
    return HKDF(hashes.SM3(), 16, salt=None, info=b"tongban record fields SM4-GCM").derive(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FieldCipher:
    """Seals and opens record field maps; `active` names the key new seals use."""

    def __init__(self, keys: Mapping[str, bytes], active: str, algorithm: str = ALGORITHM) -> None:
        """`algorithm` (A256GCM or SM4GCM) is what new seals use; both open.

        Raises `ConfigError` for a missing active key or a key of the wrong size.
        """
        if algorithm not in CIPHERS:
            raise ConfigError("crypto.suite", f"no record cipher {algorithm!r}")
        if active not in keys:
            raise ConfigError("security.active_record_key", f"no key named {active!r}")
        for kid, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"security.record_keys.{kid}", f"must be {KEY_BYTES} bytes (base64)"
                )
        self._keys: dict[str, dict[str, AESGCM | Sm4Gcm]] = {
            kid: {ALGORITHM: AESGCM(key), SM4_GCM: Sm4Gcm(_sm4_key(key))}
            for kid, key in keys.items()
        }
        self.active = active
        self.algorithm = algorithm

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64, for the configuration."""
        return _b64(AESGCM.generate_key(bit_length=256))

    def seal(self, fields: Mapping[str, Any], context: bytes) -> dict[str, Any]:
        iv = os.urandom(12)
        plain = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = self._keys[self.active][self.algorithm].encrypt(iv, plain, context)
        return {SEALED: self.algorithm, "kid": self.active, "iv": _b64(iv), "ct": _b64(sealed)}

    def open(self, stored: Mapping[str, Any], context: bytes) -> dict[str, Any]:
        """The plain fields of `stored` (returned as they are when not sealed).

        Raises `StoreError` when the key is unknown or the ciphertext was tampered with.
        """
        algorithm = stored.get(SEALED)
        if algorithm not in CIPHERS:
            return dict(stored)
        ring = self._keys.get(str(stored.get("kid")))
        if ring is None:
            raise StoreError(f"cached record sealed with unknown key {stored.get('kid')!r}")
        key = ring[str(algorithm)]
        try:
            plain = key.decrypt(
                base64.b64decode(stored["iv"]), base64.b64decode(stored["ct"]), context
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise StoreError("cached record fails its integrity check") from exc
        fields: dict[str, Any] = json.loads(plain)
        return fields

    def is_current(self, stored: Mapping[str, Any]) -> bool:
        """True when `stored` is sealed under the active key and cipher."""
        return stored.get(SEALED) == self.algorithm and stored.get("kid") == self.active


def record_context(adapter_id: str, record_type: str, source_record_id: str) -> bytes:
    """The additional authenticated data that binds sealed fields to their record."""
    return "\x1f".join((adapter_id, record_type, source_record_id)).encode()
