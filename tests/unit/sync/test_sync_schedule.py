"""Cron and interval schedules: the ticks every node computes alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from exchange.sync.schedule import CronSchedule, IntervalSchedule, parse_utc_offset

BEIJING = timezone(timedelta(hours=8))


def at(text: str, zone: timezone = BEIJING) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


NEXT_TICKS = [
    # (expression, after, next tick), all in Beijing time
    ("0 2 * * *", "2026-03-01 01:59", "2026-03-01 02:00"),
    ("0 2 * * *", "2026-03-01 02:00", "2026-03-02 02:00"),
    ("*/15 * * * *", "2026-03-01 10:07", "2026-03-01 10:15"),
    ("30 8-18/2 * * *", "2026-03-01 09:00", "2026-03-01 10:30"),
    ("0 9 * * 1-5", "2026-02-27 10:00", "2026-03-02 09:00"),  # Friday -> Monday
    ("0 0 1 * *", "2026-01-31 12:00", "2026-02-01 00:00"),
    ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),  # the next leap day
    ("0 12 1 * 0", "2026-03-02 13:00", "2026-03-08 12:00"),  # day 1 OR a Sunday
    ("0 0 * * 7", "2026-03-01 01:00", "2026-03-08 00:00"),  # 7 is Sunday too
    ("@hourly", "2026-03-01 10:59", "2026-03-01 11:00"),
    ("@daily", "2026-03-01 10:59", "2026-03-02 00:00"),
    ("5,35 * * * *", "2026-03-01 10:06", "2026-03-01 10:35"),
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT_TICKS)
def test_next_tick_of_a_cron_expression(expression: str, after: str, expected: str) -> None:
    schedule = CronSchedule.parse(expression, "+08:00")

    assert schedule.next_after(at(after)) == at(expected).astimezone(UTC)


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT_TICKS)
def test_latest_tick_at_or_before_is_the_one_before_the_next(
    expression: str, after: str, expected: str
) -> None:
    schedule = CronSchedule.parse(expression, "+08:00")
    tick = at(expected)

    assert schedule.latest_at_or_before(tick) == tick.astimezone(UTC)
    assert schedule.latest_at_or_before(tick - timedelta(seconds=1)) <= at(after)


def test_cron_reads_the_expression_in_its_utc_offset() -> None:
    beijing = CronSchedule.parse("0 2 * * *", "+08:00")
    utc = CronSchedule.parse("0 2 * * *", "+00:00")
    moment = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)

    assert beijing.next_after(moment) == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert utc.next_after(moment) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * *", "5 fields"),
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("0 24 * * *", "hour: '24' is outside 0-23"),
        ("0 0 0 * *", "day of month: '0' is outside 1-31"),
        ("0 0 * 13 *", "month: '13' is outside 1-12"),
        ("0 0 * * 8", "day of week: '8' is outside 0-7"),
        ("*/0 * * * *", "minute: a step must be at least 1"),
        ("a * * * *", "minute: 'a' is not"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 5-1 * *", "day of month: '5-1' is outside 1-31"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule.parse(expression)


def test_interval_ticks_at_multiples_of_the_period_since_the_epoch() -> None:
    every_ten_minutes = IntervalSchedule(600)
    moment = datetime(2026, 3, 1, 10, 7, 30, tzinfo=UTC)

    assert every_ten_minutes.latest_at_or_before(moment) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert every_ten_minutes.next_after(moment) == datetime(2026, 3, 1, 10, 10, tzinfo=UTC)
    tick = datetime(2026, 3, 1, 10, 10, tzinfo=UTC)
    assert every_ten_minutes.latest_at_or_before(tick) == tick
    assert every_ten_minutes.next_after(tick) == tick + timedelta(minutes=10)
    with pytest.raises(ValueError, match="at least 1 second"):
        IntervalSchedule(0.5)


def test_schedules_refuse_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule(60).next_after(datetime(2026, 3, 1))


@pytest.mark.parametrize(
    ("text", "hours"), [("+08:00", 8), ("-05:30", -5.5), ("+00:00", 0), ("+14:00", 14)]
)
def test_utc_offsets(text: str, hours: float) -> None:
    assert parse_utc_offset(text).utcoffset(None) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["8", "+8:00", "+15:00", "UTC", "+08:60"])
def test_bad_utc_offsets(text: str) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        parse_utc_offset(text)
