"""Dunning: when a failed charge of an open invoice is tried again, and when it gives up.

The schedule is days after the first failure (`ZOOPAY_DUNNING_DAYS`, default "1,3,5,7"). Each
`zoopay billing run` retries the invoices whose next attempt is due; once the last retry has
failed the invoice is uncollectible and its customer delinquent.
"""

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

DEFAULT_DUNNING_DAYS = (1, 3, 5, 7)
# A schedule longer than a year would keep an invoice open past its next period's close.
MAX_DUNNING_DAY = 366
MAX_RETRIES = 20


class BadSchedule(ValueError):
    """A dunning schedule that is not increasing whole days."""


def parse_schedule(text: str) -> tuple[int, ...]:
    """ "1,3,5,7" -> (1, 3, 5, 7): strictly increasing whole days from 1 to 366; an empty
    text means no retries (the first failure makes the invoice uncollectible)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    days = []
    for part in parts:
        if not part.isascii() or not part.isdigit():
            raise BadSchedule(f"{part[:16]!r} is not a whole number of days")
        days.append(int(part))
    return check_schedule(days)


def check_schedule(days: Sequence[int]) -> tuple[int, ...]:
    if len(days) > MAX_RETRIES:
        raise BadSchedule(f"at most {MAX_RETRIES} retries")
    for day in days:
        if not 1 <= day <= MAX_DUNNING_DAY:
            raise BadSchedule(f"a retry is 1 to {MAX_DUNNING_DAY} days after the first failure")
    if any(later <= earlier for earlier, later in itertools.pairwise(days)):
        raise BadSchedule("retry days must increase: 1,3,5,7")
    return tuple(days)


def next_attempt_at(
    schedule: Sequence[int], *, first_failed_at: datetime, retries_made: int
) -> datetime | None:
    """When the next retry is due after `retries_made` retries, or None when none is left."""
    if retries_made < 0:
        raise ValueError("retries_made is never negative")
    if retries_made >= len(schedule):
        return None
    return first_failed_at + timedelta(days=schedule[retries_made])


def retry_due(
    schedule: Sequence[int], *, first_failed_at: datetime, retries_made: int, now: datetime
) -> bool:
    due = next_attempt_at(schedule, first_failed_at=first_failed_at, retries_made=retries_made)
    return due is not None and due <= now


def exhausted(schedule: Sequence[int], *, retries_made: int) -> bool:
    """Every retry of the schedule has been made (and failed)."""
    return retries_made >= len(schedule)
