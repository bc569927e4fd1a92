"""Circuit breaker and retry policy that every adapter call runs under."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class CircuitState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    """Stops calling a source after `failure_threshold` failures in a row.

    After `cooldown` seconds one probe call is let through (half-open): success closes
    the circuit, failure opens it for another cool-down.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown > 0")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """True when a call may go to the source now (a half-open probe counts)."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for retryable failures: exponential backoff with full jitter.

    The wait before retry n is drawn uniformly from ``[0, min(max_delay,
    base_delay * 2**n)]`` (tenacity's `wait_random_exponential`); the caller's deadline
    bounds the whole sequence, so no retry starts that could not finish in time.
    """

    attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0
