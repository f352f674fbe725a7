"""Proration: exact, in the customer's favour, and never a way to make or lose money."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoopay.billing.proration import (
    FREE,
    Price,
    ProrationError,
    change_charge_micros,
    charge_cents,
    period_end,
    period_price_micros,
    prorated_micros,
    remaining_fraction,
    unused_credit_micros,
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
    assert charge_cents(prorated_micros(PRO, **window(at))) == 2450


def test_a_third_of_a_period_rounds_down_to_the_micro_and_the_cent() -> None:
    at = START + timedelta(days=20)  # 10 of 30 days left
    assert prorated_micros(PRO, **window(at)) == 16_333_333
    assert charge_cents(16_333_333) == 1633


def test_team_is_priced_per_seat() -> None:
    at = START + timedelta(days=15)
    assert prorated_micros(Price(TEAM_SEAT, seats=3), **window(at)) == 148_500_000


def test_upgrade_from_free_costs_the_rest_of_the_period_and_from_pro_the_difference() -> None:
    at = START + timedelta(days=6)  # 24 of 30 days left: 4/5
    assert change_charge_micros(FREE, PRO, **window(at)) == 39_200_000
    team = Price(TEAM_SEAT, seats=2)
    assert change_charge_micros(PRO, team, **window(at)) == (198_000_000 - 49_000_000) * 4 // 5
    assert change_charge_micros(team, PRO, **window(at)) == 0


def test_at_the_start_a_change_costs_the_whole_price_and_at_the_end_nothing() -> None:
    assert change_charge_micros(FREE, PRO, **window(START)) == PRO.micros
    assert change_charge_micros(FREE, PRO, **window(END)) == 0


def test_annual_price_is_twelve_months_less_the_discount() -> None:
    assert period_price_micros(49_000_000, annually=True, annual_discount_percent=15) == (
        499_800_000
    )
    assert period_price_micros(49_000_000, annually=False, annual_discount_percent=15) == (
        49_000_000
    )
    assert period_end(START, annually=True) == datetime(2027, 11, 1, tzinfo=UTC)
    assert period_end(datetime(2026, 1, 31, tzinfo=UTC), annually=False) == datetime(
        2026, 2, 28, tzinfo=UTC
    )


def test_nonsense_periods_are_refused() -> None:
    with pytest.raises(ProrationError):
        remaining_fraction(period_start=END, period_end=START, at=START)
    with pytest.raises(ProrationError):
        prorated_micros(PRO, **window(END + timedelta(seconds=1)))
    with pytest.raises(ProrationError):
        Price(-1)
    with pytest.raises(ProrationError):
        charge_cents(-1)


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


@given(st.lists(st.tuples(prices, moments), min_size=1, max_size=8))
def test_no_sequence_of_changes_charges_other_than_the_service_given(
    changes: list[tuple[Price, datetime]],
) -> None:
    """Upgrades charge their difference at once; a downgrade keeps the dearer plan to the
    period's end (the README's rule). Then what is charged equals, to under a micro-dollar per
    change, the service held: each stretch of the period at the plan held during it."""
    changes.sort(key=lambda change: change[1])
    held, charged = FREE, 0
    stretches: list[tuple[Price, datetime]] = []
    for price, at in changes:
        charged += change_charge_micros(held, price, **window(at))
        if price.total_micros > held.total_micros:
            held = price
        stretches.append((held, at))
    ends = [at for _, at in stretches[1:]] + [END]
    service = sum(
        held.total_micros * (remaining_fraction(**window(at)) - remaining_fraction(**window(until)))
        for (held, at), until in zip(stretches, ends, strict=True)
    )
    assert charged <= service  # never a micro-dollar for service not given
    assert service - charged < len(changes)  # and under a micro-dollar per change less


@given(prices, prices, moments)
def test_a_change_and_its_reverse_never_make_money(old: Price, new: Price, at: datetime) -> None:
    there = change_charge_micros(old, new, **window(at))
    back = change_charge_micros(new, old, **window(at))
    exact = (new.total_micros - old.total_micros) * remaining_fraction(**window(at))
    assert there >= 0 and back >= 0
    # One of them is free; the other costs the exact difference of the rests, rounded down.
    assert min(there, back) == 0
    assert max(there, back) == int(abs(exact))
    assert unused_credit_micros(new, **window(at)) == prorated_micros(new, **window(at))


@given(st.integers(min_value=0, max_value=10**15))
def test_cents_round_down_by_less_than_a_cent(micros: int) -> None:
    cents = charge_cents(micros)
    assert 0 <= micros - cents * 10_000 < 10_000
