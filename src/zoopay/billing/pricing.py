"""What a plan costs a customer for one billing period: the catalog's or a negotiated price,
per seat where the price is per user, less the annual discount when paid annually."""

from dataclasses import dataclass
from datetime import datetime

from zoopay.billing.proration import Price, period_price_micros
from zoopay.catalog.schemas import OptionEnterprise, OptionPerUser, PlanInterval
from zoopay.catalog.service import Plan
from zoopay.money import to_micros
from zoopay.subscriptions.periods import add_months


@dataclass(frozen=True)
class NegotiatedPrice:
    """An enterprise org's price as staff set it (enterprise_prices)."""

    per_user: bool
    interval: PlanInterval
    micros: int


def billed_annually(plan: Plan, *, pay_annually: bool, negotiated: NegotiatedPrice | None) -> bool:
    """Whether this plan's fee is due once a year rather than every month."""
    if plan.sold_by_sales:
        return negotiated is not None and negotiated.interval == PlanInterval.YEAR
    price = plan.terms.price
    listed_yearly = not isinstance(price, OptionEnterprise) and price.interval == PlanInterval.YEAR
    return pay_annually or listed_yearly


def fee_period_price(
    plan: Plan, *, pay_annually: bool, seats: int, negotiated: NegotiatedPrice | None
) -> Price:
    """The fee for one fee period (a month, or a year when `billed_annually`).

    Listed prices are monthly unless their interval says year; paying a monthly price annually
    costs 12 months less the plan's `annual_discount`. An enterprise plan without a negotiated
    price costs nothing (it cannot be subscribed to until staff set one). Prices listed per day
    or per week are taken as monthly: the catalog's plans are monthly.
    """
    if plan.sold_by_sales:
        if negotiated is None:
            return Price(0)
        return Price(negotiated.micros, seats if negotiated.per_user else 1)
    price = plan.terms.price
    assert not isinstance(price, OptionEnterprise)  # only sold_by_sales plans have it
    count = seats if isinstance(price, OptionPerUser) else 1
    micros = to_micros(price.price)
    if price.interval == PlanInterval.YEAR:
        return Price(micros, count)
    per_period = period_price_micros(
        micros, annually=pay_annually, annual_discount_percent=plan.terms.annual_discount
    )
    return Price(per_period, count)


def fee_period_bounds(
    anchor: datetime, period_start: datetime, *, annually: bool
) -> tuple[datetime, datetime]:
    """The fee period that the monthly period starting at `period_start` falls in: the month
    itself, or the subscription year (anchor + 12k months) around it. Both end where the
    anchor's months say (a Jan 31 anchor's Feb 28 period ends on Mar 31, not Mar 28)."""
    months = (period_start.year - anchor.year) * 12 + period_start.month - anchor.month
    if not annually:
        return period_start, add_months(anchor, months + 1)
    years = months // 12
    start = add_months(anchor, 12 * years)
    if start > period_start:
        years -= 1
        start = add_months(anchor, 12 * years)
    return start, add_months(anchor, 12 * (years + 1))


def fee_due_at_close(
    anchor: datetime, new_period_start: datetime, *, annually: bool, closed_through: datetime
) -> bool:
    """Whether a close from `closed_through` to `new_period_start` opens a fee period: the fee
    period of `new_period_start` (every month; for annual billing, every 12th month from the
    anchor) began after `closed_through` (a close after a long gap: within it)."""
    start, _ = fee_period_bounds(anchor, new_period_start, annually=annually)
    return start > closed_through
