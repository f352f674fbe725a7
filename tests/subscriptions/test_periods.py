"""Monthly periods counted from an anchor: day clamping, leap years, exact boundaries."""

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoopay.subscriptions.periods import add_months, period_start


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


JAN_31 = at(2026, 1, 31)


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (JAN_31, 0, JAN_31),
        (JAN_31, 1, at(2026, 2, 28)),
        (JAN_31, 2, at(2026, 3, 31)),
        (JAN_31, 3, at(2026, 4, 30)),
        (JAN_31, 11, at(2026, 12, 31)),
        (JAN_31, 12, at(2027, 1, 31)),
        (JAN_31, 13, at(2027, 2, 28)),
        (JAN_31, 25, at(2028, 2, 29)),
        (JAN_31, -1, at(2025, 12, 31)),
        (JAN_31, -11, at(2025, 2, 28)),
        (at(2024, 1, 31), 1, at(2024, 2, 29)),
        (at(2024, 2, 29), 1, at(2024, 3, 29)),
        (at(2024, 2, 29), 12, at(2025, 2, 28)),
        (at(2024, 2, 29), 48, at(2028, 2, 29)),
        (at(2026, 3, 31), -1, at(2026, 2, 28)),
        (at(2026, 8, 31), 1, at(2026, 9, 30)),
        (at(2026, 12, 15), 1, at(2027, 1, 15)),
        (at(2026, 1, 15), -1, at(2025, 12, 15)),
        (at(2000, 1, 30), 1, at(2000, 2, 29)),
        (at(1900, 1, 30), 1, at(1900, 2, 28)),
    ],
)
def test_add_months(anchor: datetime, months: int, expected: datetime) -> None:
    assert add_months(anchor, months) == expected


def test_add_months_keeps_the_time_of_day_and_zone() -> None:
    anchor = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    moved = add_months(anchor, 1)
    assert moved == datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC)
    assert moved.tzinfo is UTC


def test_add_months_always_counts_from_the_anchor() -> None:
    # Feb 28 is a clamped period start, not a new anchor: March still starts on the 31st.
    assert [add_months(JAN_31, k).day for k in range(6)] == [31, 28, 31, 30, 31, 30]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (JAN_31, JAN_31),
        (JAN_31 + timedelta(microseconds=1), JAN_31),
        (at(2026, 2, 28, 11, 59), JAN_31),
        (at(2026, 2, 28) - timedelta(microseconds=1), JAN_31),
        (at(2026, 2, 28), at(2026, 2, 28)),
        (at(2026, 3, 1), at(2026, 2, 28)),
        (at(2026, 3, 30), at(2026, 2, 28)),
        (at(2026, 3, 31) - timedelta(microseconds=1), at(2026, 2, 28)),
        (at(2026, 3, 31), at(2026, 3, 31)),
        (at(2026, 4, 30, 11), at(2026, 3, 31)),
        (at(2026, 4, 30), at(2026, 4, 30)),
        (at(2026, 5, 1), at(2026, 4, 30)),
        (at(2027, 1, 31), at(2027, 1, 31)),
        (at(2027, 1, 30), at(2026, 12, 31)),
        (at(2026, 1, 31, 11), at(2025, 12, 31)),
    ],
)
def test_period_start_from_a_jan_31_anchor(now: datetime, expected: datetime) -> None:
    assert period_start(JAN_31, now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2024, 2, 29, 11), at(2024, 1, 31)),
        (at(2024, 2, 29), at(2024, 2, 29)),
        (at(2024, 3, 30), at(2024, 2, 29)),
        (at(2024, 3, 31), at(2024, 3, 31)),
    ],
)
def test_period_start_in_a_leap_year(now: datetime, expected: datetime) -> None:
    assert period_start(at(2024, 1, 31), now) == expected


def test_period_start_of_a_leap_day_anchor() -> None:
    anchor = at(2024, 2, 29)
    assert period_start(anchor, at(2024, 3, 29)) == at(2024, 3, 29)
    assert period_start(anchor, at(2025, 2, 28)) == at(2025, 2, 28)
    assert period_start(anchor, at(2025, 2, 28, 11)) == at(2025, 1, 29)
    assert period_start(anchor, at(2028, 2, 29)) == at(2028, 2, 29)


def test_period_start_before_the_anchor_counts_backwards() -> None:
    assert period_start(JAN_31, at(2026, 1, 1)) == at(2025, 12, 31)
    assert period_start(JAN_31, at(2025, 12, 31)) == at(2025, 12, 31)


def test_period_start_at_the_boundary_second() -> None:
    anchor = at(2026, 1, 15)
    boundary = at(2026, 2, 15)
    assert period_start(anchor, boundary - timedelta(seconds=1)) == anchor
    assert period_start(anchor, boundary) == boundary
    assert period_start(anchor, boundary + timedelta(seconds=1)) == boundary


def months_between(anchor: datetime, later: datetime) -> int:
    return (later.year - anchor.year) * 12 + later.month - anchor.month


utc_datetimes = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)


@given(utc_datetimes, utc_datetimes)
def test_now_falls_in_the_period_that_starts_at_period_start(
    anchor: datetime, now: datetime
) -> None:
    start = period_start(anchor, now)
    k = months_between(anchor, start)
    assert start == add_months(anchor, k)
    assert start <= now < add_months(anchor, k + 1)
    assert start.time() == anchor.time()
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])
    assert period_start(anchor, start) == start


@given(utc_datetimes, st.integers(min_value=-1200, max_value=1200))
def test_every_period_start_is_its_own_period_start(anchor: datetime, k: int) -> None:
    boundary = add_months(anchor, k)
    assert period_start(anchor, boundary) == boundary
    assert period_start(anchor, boundary - timedelta(microseconds=1)) == add_months(anchor, k - 1)


def test_period_start_of_a_moment_given_in_another_zone() -> None:
    # 2026-02-28 20:00 at -05:00 is 2026-03-01 01:00 UTC: the March period of a Mar 1 anchor
    # began an hour before, whatever zone the moment is written in (`billing run --at`).
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    new_york = timezone(timedelta(hours=-5))
    now = datetime(2026, 2, 28, 20, tzinfo=new_york)
    assert period_start(anchor, now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start(anchor, now).tzinfo is UTC
