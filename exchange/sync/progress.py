"""How fast a job moves: a rate over a sliding window, for progress and ETA."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["RateMeter"]

DEFAULT_WINDOW_SECONDS: Final = 10.0


class RateMeter:
    """Records per second over the last `window` seconds (the whole run until then).

    A sliding window follows a source that speeds up or slows down, so an ETA built on
    it is about the near future, not the job's average.
    """

    def __init__(
        self,
        window: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._count = 0

    @property
    def count(self) -> int:
        """Records counted so far."""
        return self._count

    def add(self, records: int) -> float:
        """Count `records` more; returns the current rate."""
        self._count += records
        now = self._clock()
        self._samples.append((now, self._count))
        # Keep one sample at or before the window's start, to measure across it.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()
        return self.rate

    def rate_with(self, records: int) -> float:
        """The rate `add(records)` would report now, without counting them."""
        now = self._clock()
        start_time, start_count = self._samples[0]
        for sample_time, sample_count in self._samples:
            if sample_time > now - self._window:
                break
            start_time, start_count = sample_time, sample_count
        elapsed = now - start_time
        return (self._count + records - start_count) / elapsed if elapsed > 0 else 0.0

    @property
    def rate(self) -> float:
        """Records per second over the window; 0.0 until time has passed."""
        first_time, first_count = self._samples[0]
        last_time, last_count = self._samples[-1]
        elapsed = last_time - first_time
        return (last_count - first_count) / elapsed if elapsed > 0 else 0.0
