"""Proration: exact, in the customer's favour, and never a way to make or lose money."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoopay.billing.proration import (
    Price,
    ProrationError,
    period_price_micros,
    prorated_micros,
    remaining_fraction,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days
PRO = Price(49_000_000)
TEAM_SEAT = 99_000_000

moments = st.integers(min_value=0, max_value=30 * 86_400 * 1_000_000).map(
    lambda us: START + timedelta(microseconds=us)
)
prices = st.builds(
    Price,
    micros=st.integers(min_value=0, max_value=10**12),
    seats=st.integers(min_value=0, max_value=10_000),
)


def window(at: datetime) -> dict[str, datetime]:
    return {"period_start": START, "period_end": END, "at": at}


def test_half_a_month_of_pro_is_half_its_price() -> None:
    at = START + timedelta(days=15)
    assert prorated_micros(PRO, **window(at)) == 24_500_000


def test_a_third_of_a_period_rounds_down_to_the_micro() -> None:
    at = START + timedelta(days=20)  # 10 of 30 days left
    assert prorated_micros(PRO, **window(at)) == 16_333_333


def test_team_is_priced_per_seat() -> None:
    at = START + timedelta(days=15)
    assert prorated_micros(Price(TEAM_SEAT, seats=3), **window(at)) == 148_500_000


def test_annual_price_is_twelve_months_less_the_discount() -> None:
    assert period_price_micros(49_000_000, annually=True, annual_discount_percent=15) == (
        499_800_000
    )
    assert period_price_micros(49_000_000, annually=False, annual_discount_percent=15) == (
        49_000_000
    )


def test_nonsense_periods_are_refused() -> None:
    with pytest.raises(ProrationError):
        remaining_fraction(period_start=END, period_end=START, at=START)
    with pytest.raises(ProrationError):
        prorated_micros(PRO, **window(END + timedelta(seconds=1)))
    with pytest.raises(ProrationError):
        Price(-1)


@given(prices, moments)
def test_a_prorated_price_is_at_most_the_price_and_exact_to_the_micro(
    price: Price, at: datetime
) -> None:
    charged = prorated_micros(price, **window(at))
    share = remaining_fraction(**window(at))
    assert 0 <= charged <= price.total_micros
    # Rounded down by less than one micro-dollar: exact, in the customer's favour.
    assert 0 <= price.total_micros * share - charged < 1


@given(prices, moments, moments)
def test_later_never_costs_more(price: Price, first: datetime, second: datetime) -> None:
    early, late = sorted([first, second])
    assert prorated_micros(price, **window(late)) <= prorated_micros(price, **window(early))
