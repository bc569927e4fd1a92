"""CircuitBreaker: closed -> open after a failure run -> half-open probe -> closed or open."""

from __future__ import annotations

import pytest

from adapters.resilience import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# (steps, expected state after the steps); "F" failure, "S" success, "+N" time passes,
# "A" a call asks to go through (result recorded in the next step).
SCENARIOS = [
    ("", CircuitState.CLOSED),
    ("F F", CircuitState.CLOSED),
    ("F F F", CircuitState.OPEN),
    ("F F S F F", CircuitState.CLOSED),
    ("F F F +29", CircuitState.OPEN),
    ("F F F +30", CircuitState.HALF_OPEN),
    ("F F F +30 A S", CircuitState.CLOSED),
    ("F F F +30 A F", CircuitState.OPEN),
    ("F F F +30 A F +30", CircuitState.HALF_OPEN),
]


@pytest.mark.parametrize(("steps", "expected"), SCENARIOS, ids=[s or "new" for s, _ in SCENARIOS])
def test_state_machine(steps, expected):
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=30, clock=clock)
    for step in steps.split():
        if step == "F":
            breaker.record_failure()
        elif step == "S":
            breaker.record_success()
        elif step == "A":
            assert breaker.allow()
        else:
            clock.now += float(step[1:])
    assert breaker.state is expected


def test_half_open_lets_exactly_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now = 5
    assert breaker.allow()
    assert not breaker.allow()


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
