"""What a servicer method may ask of its call context, on either transport.

A gRPC `ServicerContext` satisfies it, and so does the HTTP transport's
`exchange.http.routes.HttpCallContext`: that is why one servicer method serves both.
"""

from __future__ import annotations

from typing import Protocol


class CallContext(Protocol):
    """The transport facts a servicer method may use (nothing else)."""

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline, or None when it set none."""
        ...
