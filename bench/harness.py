"""Small helpers shared by the benchmark modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ratio:
    """One benchmark outcome: measured / baseline against a target.

    `higher_is_better=False` is for latency-style ratios where the target is a ceiling.
    """

    name: str
    measured: float
    baseline: float
    target: float
    unit: str
    higher_is_better: bool = True

    @property
    def value(self) -> float:
        return self.measured / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A memory figure of `/proc/<pid>/status` in KiB (``VmRSS``, ``VmHWM``), or None
    where there is no such file or field (not Linux)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def rate(fn: Callable[[], object], *, seconds: float = 2.0, min_calls: int = 50) -> float:
    """Calls per second of `fn`, measured for about `seconds` after one warm-up call."""
    fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls / elapsed


def report(ratios: list[Ratio]) -> int:
    """Print the summary table; return the process exit code (1 when a target is missed)."""
    print("\n=== summary ===")
    failed = 0
    for r in ratios:
        sign = ">=" if r.higher_is_better else "<="
        verdict = "ok" if r.met else "MISSED"
        print(
            f"{r.name}: {r.value:.2f} (target {sign} {r.target:.2f}) "
            f"measured {r.measured:,.1f} {r.unit} vs baseline {r.baseline:,.1f} {r.unit} "
            f"[{verdict}]"
        )
        failed += not r.met
    return 1 if failed else 0
