"""Encryption at rest of cached record fields: AES-256-GCM with a key ring.

A sealed field map is stored as ``{"$sealed": "A256GCM", "kid": …, "iv": …, "ct": …}``
in place of the fields. The additional authenticated data binds the ciphertext to its
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import ConfigError, StoreError

SEALED = "$sealed"
ALGORITHM = "A256GCM"
KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FieldCipher:
    """Seals and opens record field maps; `active` names the key new seals use."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        """Raises `ConfigError` for a missing active key or a key of the wrong size."""
        if active not in keys:
            raise ConfigError("security.active_record_key", f"no key named {active!r}")
        for kid, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"security.record_keys.{kid}", f"must be {KEY_BYTES} bytes (base64)"
                )
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active = active

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64, for the configuration."""
        return _b64(AESGCM.generate_key(bit_length=256))

    def seal(self, fields: Mapping[str, Any], context: bytes) -> dict[str, Any]:
        iv = os.urandom(12)
        plain = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = self._keys[self.active].encrypt(iv, plain, context)
        return {SEALED: ALGORITHM, "kid": self.active, "iv": _b64(iv), "ct": _b64(sealed)}

    def open(self, stored: Mapping[str, Any], context: bytes) -> dict[str, Any]:
        """The plain fields of `stored` (returned as they are when not sealed).

        Raises `StoreError` when the key is unknown or the ciphertext was tampered with.
        """
        if stored.get(SEALED) != ALGORITHM:
            return dict(stored)
        key = self._keys.get(str(stored.get("kid")))
        if key is None:
            raise StoreError(f"cached record sealed with unknown key {stored.get('kid')!r}")
        try:
            plain = key.decrypt(
                base64.b64decode(stored["iv"]), base64.b64decode(stored["ct"]), context
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise StoreError("cached record fails its integrity check") from exc
        fields: dict[str, Any] = json.loads(plain)
        return fields

    def is_current(self, stored: Mapping[str, Any]) -> bool:
        """True when `stored` is sealed under the active key."""
        return stored.get(SEALED) == ALGORITHM and stored.get("kid") == self.active


def record_context(adapter_id: str, record_type: str, source_record_id: str) -> bytes:
    """The additional authenticated data that binds sealed fields to their record."""
    return "\x1f".join((adapter_id, record_type, source_record_id)).encode()
