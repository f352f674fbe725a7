"""The instants zoopay accepts: in the years it can bill, 2000 to 2099, with a time zone.

A time outside them is a mistake (a year 9999, a zero timestamp) that would otherwise reach
the database, or date arithmetic, as an overflow."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # excluded


class InstantOutOfRange(ValueError):
    pass


def check_instant(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise InstantOutOfRange(
            f"must be from {EARLIEST:%Y-%m-%d} up to, not including, {LATEST:%Y-%m-%d} (UTC)"
        )
    return value


# A time a client gives us: with its zone, within the range above.
Instant = Annotated[AwareDatetime, AfterValidator(check_instant)]
