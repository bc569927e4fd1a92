"""What configuration declares about an adapter: its id, kind, department and bindings.

It lives in the domain so `adapters/` can build adapters from a declaration without
importing the hub's settings; `exchange.settings` embeds it in `[[adapters]]`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import InvalidKey
from domain.subjects import KeyKind, parse_key

__all__ = ["AdapterKindName", "AdapterSettings", "RecordTypeBinding"]

_ADAPTER_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
AdapterKindName = Literal["grpc", "sql", "http", "file", "python"]


class _Declaration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordTypeBinding(_Declaration):
    record_type: str
    key_kinds: list[KeyKind] = Field(min_length=1)


class AdapterSettings(_Declaration):
    """An adapter declared in configuration. `options` are the kind's own settings."""

    id: str
    kind: AdapterKindName
    department: str = Field(min_length=1)
    department_uscc: str = ""
    serves: list[RecordTypeBinding] = Field(min_length=1)
    timeout_seconds: float = Field(default=3.0, gt=0, le=120)
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    # The circuit opens after this many failed calls in a row; after the cool-down one
    # probe call decides whether it closes again.
    circuit_failure_threshold: int = Field(default=5, ge=1, le=1000)
    circuit_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A remote adapter that promises heartbeats is marked down when one is missed.
    heartbeat_seconds: float | None = Field(default=None, gt=0, le=3600)
    options: dict[str, Any] = Field(default_factory=dict)
    # The department's record-signing public keys (JWKs; optional `tongban_status`,
    # `tongban_not_before`, `tongban_not_after`, `tongban_compromised_since` as in the
    # trust bundle). When set, every record must carry a valid department signature.
    department_keys: list[dict[str, Any]] = Field(default_factory=list, max_length=16)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ADAPTER_ID.match(value):
            raise ValueError("lower-case letters, digits, '.' and '-', at most 63 characters")
        return value

    @field_validator("department_uscc")
    @classmethod
    def _uscc_valid(cls, value: str) -> str:
        if not value:
            return value
        try:
            return parse_key(KeyKind.USCC, value).value
        except InvalidKey as exc:
            raise ValueError(exc.key_rule) from exc
