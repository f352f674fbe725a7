"""The dunning schedule: parsing ZOOPAY_DUNNING_DAYS and when each retry falls."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from zoopay.billing.dunning import (
    DEFAULT_DUNNING_DAYS,
    BadSchedule,
    exhausted,
    next_attempt_at,
    parse_schedule,
    retry_due,
)
from zoopay.config import Settings

FAILED = datetime(2026, 11, 3, 12, tzinfo=UTC)


def test_the_default_is_after_1_3_5_and_7_days() -> None:
    assert DEFAULT_DUNNING_DAYS == (1, 3, 5, 7)
    assert Settings().dunning_days == (1, 3, 5, 7)
    days = [
        next_attempt_at(DEFAULT_DUNNING_DAYS, first_failed_at=FAILED, retries_made=n)
        for n in range(5)
    ]
    assert days == [FAILED + timedelta(days=d) for d in (1, 3, 5, 7)] + [None]
    assert not exhausted(DEFAULT_DUNNING_DAYS, retries_made=3)
    assert exhausted(DEFAULT_DUNNING_DAYS, retries_made=4)


def test_a_retry_is_due_from_its_day_on() -> None:
    just_before = FAILED + timedelta(days=1) - timedelta(microseconds=1)
    assert not retry_due((1, 3), first_failed_at=FAILED, retries_made=0, now=just_before)
    assert retry_due((1, 3), first_failed_at=FAILED, retries_made=0, now=FAILED + timedelta(1))
    assert not retry_due((1, 3), first_failed_at=FAILED, retries_made=2, now=FAILED + timedelta(99))


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOPAY_DUNNING_DAYS", " 2, 4 ,10")
    assert Settings().dunning_days == (2, 4, 10)
    monkeypatch.setenv("ZOOPAY_DUNNING_DAYS", "")
    assert Settings().dunning_days == ()


BAD = ["3,1", "1,1", "0", "-1", "1.5", "x", "367", "\uff11", ",".join(["1"] * 3)]


@pytest.mark.parametrize("text", BAD)
def test_bad_schedules_are_refused(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadSchedule):
        parse_schedule(text)
    monkeypatch.setenv("ZOOPAY_DUNNING_DAYS", text)
    with pytest.raises(ValidationError):
        Settings()


@given(st.lists(st.integers(min_value=1, max_value=366), unique=True, max_size=20))
def test_any_increasing_schedule_round_trips(days: list[int]) -> None:
    days.sort()
    assert parse_schedule(",".join(map(str, days))) == tuple(days)
    attempts = [
        next_attempt_at(days, first_failed_at=FAILED, retries_made=n) for n in range(len(days))
    ]
    assert attempts == sorted(attempts)  # type: ignore[type-var]
    assert next_attempt_at(days, first_failed_at=FAILED, retries_made=len(days)) is None
