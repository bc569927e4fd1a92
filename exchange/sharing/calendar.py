"""Working days, for the owner's decision period (2016 rules: 10 working days).

Weekends are skipped, configured public holidays too, and configured make-up working
days (调休, a Saturday or Sunday that is worked) count. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo


class WorkingCalendar:
    """Counts working days in one time zone (the hub's local offset)."""

    def __init__(
        self, zone: tzinfo, holidays: Iterable[date] = (), working_weekend_days: Iterable[date] = ()
    ) -> None:
        self.zone = zone
        self.holidays = frozenset(holidays)
        self.working_weekend_days = frozenset(working_weekend_days)

    def is_working_day(self, day: date) -> bool:
        if day in self.working_weekend_days:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def deadline(self, submitted: datetime, working_days: int) -> datetime:
        """The end of the `working_days`-th working day after the day of `submitted`
        (local time), as an aware datetime: the start of the next local day."""
        day = submitted.astimezone(self.zone).date()
        counted = 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day + timedelta(days=1), time(0), self.zone)
