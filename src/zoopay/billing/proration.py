"""What a plan costs for a period, or for what is left of one: exact, in integer micro-dollars.

Pure functions (no database, no clock): the plan change and the period close both price with
them, and the hypothesis tests in tests/billing/test_proration.py hold them to their rules.

The rest of a period is rounded *down* to the micro-dollar here. A plan change
(billing.upgrades.quote) rounds each plan's rest down to the cent before taking their
difference, for the charge and the credit alike: rounding differences (or crediting one
unrounded) let a round trip at one moment credit more than it charged
(tests/billing/test_paid_upgrades.py holds it to that).
"""

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

MICROS_PER_CENT = 10_000


class ProrationError(ValueError):
    """Arguments that describe no period (an end before its start, a moment outside it)."""


@dataclass(frozen=True)
class Price:
    """A plan's price for one billing period: `micros` per seat, `seats` of them (1 for flat)."""

    micros: int
    seats: int = 1

    def __post_init__(self) -> None:
        if self.micros < 0:
            raise ProrationError("a price is never negative")
        if self.seats < 0:
            raise ProrationError("a seat count is never negative")

    @property
    def total_micros(self) -> int:
        return self.micros * self.seats


FREE = Price(0)


def period_price_micros(
    monthly_micros: int, *, annually: bool, annual_discount_percent: int | None
) -> int:
    """One period's price per seat: the monthly price, or 12 months less the annual discount
    (rounded down to the micro-dollar) when paid annually."""
    if not annually:
        return monthly_micros
    discount = annual_discount_percent or 0
    if not 0 <= discount <= 100:
        raise ProrationError("an annual discount is a percentage from 0 to 100")
    return monthly_micros * 12 * (100 - discount) // 100


def remaining_fraction(*, period_start: datetime, period_end: datetime, at: datetime) -> Fraction:
    """The part of the period still to come at `at`, exactly (microsecond resolution)."""
    if period_end <= period_start:
        raise ProrationError("a period ends after it starts")
    if not period_start <= at <= period_end:
        raise ProrationError("the moment is outside the period")
    return Fraction(_micros_between(at, period_end), _micros_between(period_start, period_end))


def prorated_micros(
    price: Price, *, period_start: datetime, period_end: datetime, at: datetime
) -> int:
    """The price of the rest of the period from `at`, rounded down to the micro-dollar."""
    share = remaining_fraction(period_start=period_start, period_end=period_end, at=at)
    return int(price.total_micros * share)  # int() of a non-negative Fraction floors it


def _micros_between(start: datetime, end: datetime) -> int:
    delta = end - start
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
