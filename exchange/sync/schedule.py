"""When scheduled sync jobs start: cron expressions and fixed intervals. Pure, no I/O.

Every hub node computes the same ticks from the same configuration, so nodes agree on
which tick a job belongs to without talking to each other: an interval schedule ticks
at whole multiples of its period since the Unix epoch (UTC), a cron schedule at the
minutes its expression names, read in a fixed UTC offset (China has no daylight
saving time, so an offset is all a schedule needs).

Cron expressions have five fields, ``minute hour day-of-month month day-of-week``,
each ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a list of those
separated by commas; day-of-week 0 and 7 are Sunday. As in Vixie cron, when both day
fields are restricted a day matches if either does. ``@hourly``, ``@daily``
(``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly`` are accepted too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final, Protocol

__all__ = ["CronSchedule", "IntervalSchedule", "Schedule", "parse_utc_offset"]

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (name, lowest, highest) of each field, in order.
_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_OFFSET: Final = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_TERM: Final = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?$")
# A cron expression that never matches (30 February) is found out within this span.
_SEARCH_DAYS: Final = 366 * 8


class Schedule(Protocol):
    """Tick times of a schedule."""

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment` (timezone-aware, returned in UTC)."""

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (timezone-aware, returned in UTC)."""


def parse_utc_offset(text: str) -> timezone:
    """``+08:00`` as a `timezone`. Raises `ValueError` for anything else."""
    match = _OFFSET.match(text)
    if match is None or int(match.group(2)) > 14 or int(match.group(3)) > 59:
        raise ValueError(f"UTC offset must look like +08:00, got {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


@dataclass(frozen=True)
class IntervalSchedule:
    """Ticks every `seconds`, at whole multiples of it since the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 1:
            raise ValueError("an interval must be at least 1 second")

    def latest_at_or_before(self, moment: datetime) -> datetime:
        ticks = math.floor(_aware(moment).timestamp() / self.seconds)
        return datetime.fromtimestamp(ticks * self.seconds, UTC)

    def next_after(self, moment: datetime) -> datetime:
        ticks = math.floor(_aware(moment).timestamp() / self.seconds) + 1
        return datetime.fromtimestamp(ticks * self.seconds, UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression read in a fixed UTC offset. Build with `parse`."""

    expression: str
    offset: timezone
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    # Monday is 0, as `date.weekday()` counts.
    weekdays: frozenset[int]
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    @classmethod
    def parse(cls, expression: str, utc_offset: str = "+08:00") -> CronSchedule:
        """Parse `expression`, read in `utc_offset`.

        Raises `ValueError` saying which field is wrong, or when the expression can
        never match (``0 0 30 2 *``).
        """
        text = " ".join(expression.split())
        fields = _MACROS.get(text.lower(), text).split(" ")
        if len(fields) != len(_FIELDS):
            raise ValueError(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week)"
            )
        values = [
            _parse_field(raw, name, low, high)
            for raw, (name, low, high) in zip(fields, _FIELDS, strict=True)
        ]
        # cron counts Sunday as 0 (and 7); Python's weekday() counts Monday as 0.
        weekdays = frozenset((day - 1) % 7 for day in values[4])
        schedule = cls(
            expression=text,
            offset=parse_utc_offset(utc_offset),
            minutes=values[0],
            hours=values[1],
            days_of_month=values[2],
            months=values[3],
            weekdays=weekdays,
            day_of_month_restricted=fields[2] != "*",
            day_of_week_restricted=fields[4] != "*",
        )
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises when it never matches
        return schedule

    def latest_at_or_before(self, moment: datetime) -> datetime:
        local = _aware(moment).astimezone(self.offset).replace(second=0, microsecond=0)
        return self._search(local, step=-1, include_start=True)

    def next_after(self, moment: datetime) -> datetime:
        local = _aware(moment).astimezone(self.offset).replace(second=0, microsecond=0)
        return self._search(local, step=1, include_start=False)

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_month_day = day.day in self.days_of_month
        by_weekday = day.weekday() in self.weekdays
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return by_month_day or by_weekday
        return by_month_day and by_weekday

    def _search(self, start: datetime, *, step: int, include_start: bool) -> datetime:
        """The nearest matching minute from `start` (local time) in the direction of `step`."""
        times = sorted((hour, minute) for hour in self.hours for minute in self.minutes)
        if step < 0:
            times.reverse()
        day = start.date()
        for offset_days in range(_SEARCH_DAYS):
            candidate_day = day + timedelta(days=step * offset_days)
            if not self._day_matches(candidate_day):
                continue
            for hour, minute in times:
                candidate = datetime(
                    candidate_day.year,
                    candidate_day.month,
                    candidate_day.day,
                    hour,
                    minute,
                    tzinfo=self.offset,
                )
                if candidate == start and include_start:
                    return candidate.astimezone(UTC)
                if (candidate - start).total_seconds() * step > 0:
                    return candidate.astimezone(UTC)
        raise ValueError(f"cron expression {self.expression!r} never matches")


def _parse_field(raw: str, name: str, low: int, high: int) -> frozenset[int]:
    chosen: set[int] = set()
    for term in raw.split(","):
        match = _TERM.match(term)
        if match is None:
            raise ValueError(f"{name}: {term!r} is not *, N, A-B, */S or A-B/S")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"{name}: a step must be at least 1")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(part) for part in span.split("-"))
        else:
            first = last = int(span)
            if step_text:  # "5/15" means from 5 to the end, every 15
                last = high
        if not low <= first <= last <= high:
            raise ValueError(f"{name}: {term!r} is outside {low}-{high}")
        chosen.update(range(first, last + 1, step))
    return frozenset(chosen)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("schedules need timezone-aware times")
    return moment
