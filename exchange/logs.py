"""Structured logging: structlog JSON lines with request ids and masked identifiers.

`configure_logging()` runs once at start-up. Every log line passes through
`mask_personal_identifiers`, so an ID-card number, USCC or certificate number that
slips into an event is masked (``110101********002X``) before it is written.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from domain.subjects import mask_identifiers

# What a caller may send as its own request id (gRPC x-request-id, HTTP X-Request-Id).
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A request id names a call in logs and traces and guards nothing, so it comes from a
# PRNG seeded once from the OS instead of a getrandom() system call per call (os.urandom,
# uuid4): py-spy sampled that call at ~6% of the hub under h2load; dropping it gained ~2%
# of Lookups/s. Reseeded in a forked child.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)


def new_request_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` gives."""
    return f"{_IDS.getrandbits(128):032x}"


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_identifiers(value)
    if isinstance(value, Mapping):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_personal_identifiers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask identifiers in every string value of the event."""
    return {key: _mask(value) for key, value in event_dict.items()}


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing, not at configuration."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure structlog for this process; lines go to `stream` or the current stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_identifiers,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
