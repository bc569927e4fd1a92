"""Rate over a sliding window, and the ETA a job reports from it."""

from __future__ import annotations

import pytest

from domain.sync_jobs import JobProgress
from exchange.sync.progress import RateMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_follows_the_last_window_not_the_whole_run() -> None:
    clock = FakeClock()
    meter = RateMeter(window=10, clock=clock)
    for _ in range(10):  # 1,000 records a second for 10 s
        clock.now += 1
        meter.add(1000)
    assert meter.rate == pytest.approx(1000)

    for _ in range(10):  # then 100 a second
        clock.now += 1
        meter.add(100)

    assert meter.rate == pytest.approx(100, rel=0.1)
    assert meter.count == 11_000


def test_rate_with_previews_without_counting() -> None:
    clock = FakeClock()
    meter = RateMeter(clock=clock)
    clock.now += 2

    assert meter.rate_with(500) == pytest.approx(250)
    assert (meter.count, meter.rate) == (0, 0.0)


@pytest.mark.parametrize(
    ("progress", "eta"),
    [
        (JobProgress(records_seen=1000, total_estimate=4000, records_per_second=500.0), 6.0),
        (JobProgress(records_seen=4500, total_estimate=4000, records_per_second=500.0), 0.0),
        (JobProgress(records_seen=1000, total_estimate=None, records_per_second=500.0), None),
        (JobProgress(records_seen=0, total_estimate=4000, records_per_second=0.0), None),
    ],
)
def test_eta_needs_a_total_and_a_rate(progress: JobProgress, eta: float | None) -> None:
    assert progress.eta_seconds == eta
