"""Period close, the set-based part: which customers' billing periods have ended, and claiming
them, a chunk of customers per transaction.

A claim is one row of `billing_closes` per customer and ended period, written in the
transaction that moves the subscription's `closed_through` to the period now open, applies a
downgrade that waited for the period end and starts the new monthly grant. The row holds what
the invoice will bill (the fee for the period that begins, the usage of the one that ended),
decided under the balance locks, so a concurrent call or plan change is either before it or
after it. A run that crashes loses at most the chunk it was claiming; a rerun selects only
what is still open, so nobody is claimed (and so billed) twice.

A customer delinquent when their period is closed (dunning gave up on an invoice, not paid
since) falls back to the free plan at the end of the fee period they paid for (every month, or
every 12th month for annual billing): the next period bills no plan fee, a pending downgrade
is dropped. One who paid before the close keeps their plan and is billed for it; one who pays
after it stays on free until they upgrade again (a paid upgrade).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.billing.pricing import (
    NegotiatedPrice,
    billed_annually,
    fee_due_at_close,
    fee_period_bounds,
    fee_period_price,
)
from zoopay.catalog.schemas import PlanInterval, TierName
from zoopay.catalog.service import Catalog, Plan
from zoopay.db.bulk import insert_new, select_where_one_of, update_all
from zoopay.db.tables import (
    balances,
    billing_closes,
    enterprise_prices,
    invoices,
    org_members,
    payment_customers,
    subscriptions,
    usage_thresholds,
)
from zoopay.ledger.service import Customer, Posting, Reason
from zoopay.subscriptions.grants import grant_plan_change
from zoopay.subscriptions.periods import period_start
from zoopay.subscriptions.service import (
    SYSTEM_ACTOR,
    Subscription,
    lock_balances_with_subscriptions,
    refresh_many,
)

# A monthly period lasts at least 28 days: a subscription closed more recently than that has
# nothing to close, and the database leaves it out by index.
_SHORTEST_PERIOD = timedelta(days=28)


class CloseStatus:
    CLAIMED = "claimed"
    INVOICED = "invoiced"
    NOTHING_DUE = "nothing_due"


@dataclass(frozen=True)
class ClosedPeriod:
    customer: Customer
    period_start: datetime
    period_end: datetime
    tier: TierName
    next_tier: TierName
    seats: int
    fee_micros: int
    usage_micros: int
    # Where the fee period that the fee pays for ends (None: no fee): the downgrade credit's
    # bound reads it (billing.upgrades.unused_paid).
    fee_until: datetime | None = None

    @property
    def owes_nothing(self) -> bool:
        return self.fee_micros == 0 and self.usage_micros == 0


async def customers_to_close(conn: AsyncConnection, *, at: datetime) -> list[Customer]:
    """Customers with a billing period that ended by `at` and is not closed, in id order: one
    indexed statement, then the exact month arithmetic on what it returns."""
    query = (
        select(
            subscriptions.c.customer_kind,
            subscriptions.c.customer_id,
            subscriptions.c.anchor_at,
            subscriptions.c.closed_through,
        )
        .where(subscriptions.c.closed_through <= at - _SHORTEST_PERIOD)
        .order_by(subscriptions.c.customer_id)
    )
    due = []
    for kind, customer_id, anchor, closed_through in await conn.execute(query):
        if period_start(anchor, at) > closed_through:
            due.append(Customer("org" if kind == "org" else "user", customer_id))
    return due


async def has_period_to_close(conn: AsyncConnection, *, customer: Customer, at: datetime) -> bool:
    """Whether `customer`'s billing period ended by `at` and is not closed yet: the one-row
    check that spares a plan change `claim`'s statements when there is nothing to close."""
    query = select(subscriptions.c.anchor_at, subscriptions.c.closed_through).where(
        subscriptions.c.customer_id == customer.id
    )
    row = (await conn.execute(query)).first()
    return row is not None and period_start(row[0], at) > row[1]


_SEATS = (
    select(org_members.c.org_id, func.count().label("seats"))
    .group_by(org_members.c.org_id)
    .order_by(org_members.c.org_id)
)
_NEGOTIATED = select(enterprise_prices).order_by(enterprise_prices.c.org_id)
# Usage already billed and not yet paid (a claimed close not invoiced yet, an early invoice
# still open or given up on): it is in total_due, and no later invoice bills it again.
_UNPAID_BILLED = (
    select(billing_closes.c.customer_id, func.sum(billing_closes.c.usage_micros).label("billed"))
    .select_from(billing_closes.outerjoin(invoices, invoices.c.id == billing_closes.c.invoice_id))
    # Literal text: db.bulk compiles this once and sends only the customer ids as parameters.
    .where(
        text("(billing_closes.status = 'claimed' OR invoices.status IN ('open', 'uncollectible'))")
    )
    .group_by(billing_closes.c.customer_id)
    .order_by(billing_closes.c.customer_id)
)


async def unpaid_billed(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, int]:
    rows = await select_where_one_of(
        conn, _UNPAID_BILLED, billing_closes.c.customer_id, customer_ids
    )
    return {row["customer_id"]: int(row["billed"] or 0) for row in rows}


# Bound values would break db.bulk's compiled statement: `IS true` is literal SQL.
_DELINQUENT = (
    select(payment_customers.c.customer_id)
    .where(payment_customers.c.delinquent.is_(True))
    .order_by(payment_customers.c.customer_id)
)


async def delinquent_among(conn: AsyncConnection, customer_ids: Sequence[str]) -> set[str]:
    rows = await select_where_one_of(
        conn, _DELINQUENT, payment_customers.c.customer_id, customer_ids
    )
    return {row["customer_id"] for row in rows}


_CLOSE_STATE = select(
    subscriptions.c.id, subscriptions.c.closed_through, subscriptions.c.pending_tier
)


async def claim(
    conn: AsyncConnection, catalog: Catalog, customers: Sequence[Customer], *, at: datetime
) -> list[ClosedPeriod]:
    """Close the ended periods of `customers` (a chunk) in this transaction: what each owes is
    recorded in `billing_closes`, the subscription moves on (a pending downgrade applied), and
    the new period's monthly grant starts. Customers closed meanwhile are left alone."""
    locked = await lock_balances_with_subscriptions(conn, customers=customers)
    ids = sorted(customer.id for customer in locked)
    state = {
        row["id"]: row
        for row in await select_where_one_of(conn, _CLOSE_STATE, subscriptions.c.customer_id, ids)
    }
    org_ids = sorted(customer.id for customer in locked if customer.kind == "org")
    seats = {
        row["org_id"]: int(row["seats"])
        for row in await select_where_one_of(conn, _SEATS, org_members.c.org_id, org_ids)
    }
    negotiated = {
        row["org_id"]: _negotiated(row)
        for row in await select_where_one_of(conn, _NEGOTIATED, enterprise_prices.c.org_id, org_ids)
    }
    billed = await unpaid_billed(conn, ids)
    delinquent = await delinquent_among(conn, ids)
    closes, moves = [], []
    for balance, subscription in locked.values():
        if subscription is None:
            continue
        row = state[subscription.id]
        closed_through: datetime = row["closed_through"]
        opens = period_start(subscription.anchor_at, at)
        if opens <= closed_through:
            continue  # closed meanwhile, or not ended
        customer = balance.customer
        price = negotiated.get(customer.id)
        next_plan = _plan(catalog, row["pending_tier"]) or _plan(catalog, subscription.tier)
        if customer.id in delinquent:
            falls_back = _unpaid_falls_back(catalog, subscription, closed_through, opens, price)
            next_plan = falls_back or next_plan
        if next_plan is None:
            continue  # a tier the catalog no longer offers: left for an operator
        annually = billed_annually(
            next_plan, pay_annually=subscription.pay_annually, negotiated=price
        )
        count = seats.get(customer.id, 0) if customer.kind == "org" else 1
        fee, fee_until = 0, None
        if fee_due_at_close(
            subscription.anchor_at, opens, annually=annually, closed_through=closed_through
        ):
            fee = fee_period_price(
                next_plan, pay_annually=subscription.pay_annually, seats=count, negotiated=price
            ).total_micros
            fee_until = fee_period_bounds(subscription.anchor_at, opens, annually=annually)[1]
        closes.append(
            ClosedPeriod(
                customer=customer,
                period_start=closed_through,
                period_end=opens,
                tier=subscription.tier,
                next_tier=next_plan.name,
                seats=count,
                fee_micros=fee,
                usage_micros=max(0, balance.total_due_micros - billed.get(customer.id, 0)),
                fee_until=fee_until if fee else None,
            )
        )
        moves.append(
            {
                "id": subscription.id,
                "closed_through": opens,
                "tier": next_plan.name.value,
                "pending_tier": None,
                "updated_at": at,
            }
        )
    claimed = await insert_new(conn, billing_closes, [_row(close, at) for close in closes])
    await update_all(
        conn,
        subscriptions,
        [m for m, c in zip(moves, closes, strict=True) if c.customer.id in claimed],
    )
    # A plan the close changes holds from the period that begins: where a request already
    # started that period at the old plan's grant, the bucket follows the change now.
    for close in closes:
        balance, subscription = locked[close.customer]
        new = catalog.plan(close.next_tier)
        if (
            close.customer.id in claimed
            and close.next_tier != close.tier
            and new is not None
            and subscription is not None
            and subscription.period_start >= close.period_end
        ):
            await grant_plan_change(
                conn,
                balance=balance,
                old=catalog.plan(close.tier),
                new=new,
                period_start=subscription.period_start,
                posting=Posting(Reason.PLAN_CHANGE, SYSTEM_ACTOR, subscription.id),
                now=at,
            )
    # The new period's grant, at the plan that now holds (after a downgrade): the refresh any
    # request would do, done here for the whole chunk.
    await refresh_many(conn, catalog=catalog, customers=list(locked), now=at)
    return [close for close in closes if close.customer.id in claimed]


def _plan(catalog: Catalog, tier: str | None) -> Plan | None:
    return catalog.plan(tier) if tier else None


def _unpaid_falls_back(
    catalog: Catalog,
    subscription: Subscription,
    closed_through: datetime,
    opens: datetime,
    price: NegotiatedPrice | None,
) -> Plan | None:
    """The free plan, for a delinquent customer whose paid fee period ended by `opens`; None
    (no change) mid-way through a year paid for, or on a plan the catalog no longer offers."""
    current = _plan(catalog, subscription.tier)
    if current is None or current.name == TierName.FREE:
        return None
    annually = billed_annually(current, pay_annually=subscription.pay_annually, negotiated=price)
    if not fee_due_at_close(
        subscription.anchor_at, opens, annually=annually, closed_through=closed_through
    ):
        return None
    return catalog.plan(TierName.FREE)


def _negotiated(row: Mapping[str, Any]) -> NegotiatedPrice:
    return NegotiatedPrice(
        per_user=row["price_type"] == "per_user",
        interval=PlanInterval(row["interval"]),
        micros=int(row["price_micros"]),
    )


def _row(close: ClosedPeriod, at: datetime) -> dict[str, Any]:
    return {
        "customer_id": close.customer.id,
        "period_end": close.period_end,
        "customer_kind": close.customer.kind,
        "period_start": close.period_start,
        "tier": close.tier.value,
        "next_tier": close.next_tier.value,
        "seats": close.seats,
        "fee_micros": close.fee_micros,
        "usage_micros": close.usage_micros,
        "fee_until": close.fee_until,
        "status": CloseStatus.NOTHING_DUE if close.owes_nothing else CloseStatus.CLAIMED,
        "invoice_id": None,
        "created_at": at,
        "updated_at": at,
    }


# Customers with unpaid usage, their threshold (staff's, their own, or the default) and what
# of it is billed already: one statement over every balance with something due.
_OVER_THRESHOLD = (
    select(
        balances.c.customer_kind,
        balances.c.customer_id,
        balances.c.total_due_micros,
        usage_thresholds.c.admin_amount_micros,
        usage_thresholds.c.customer_amount_micros,
        subscriptions.c.tier,
    )
    .select_from(
        balances.outerjoin(
            usage_thresholds, usage_thresholds.c.customer_id == balances.c.customer_id
        ).join(subscriptions, subscriptions.c.customer_id == balances.c.customer_id)
    )
    .where(balances.c.total_due_micros > 0)
    .order_by(balances.c.customer_id)
)


async def claim_early(conn: AsyncConnection, *, at: datetime, default_micros: int) -> int:
    """An early close (usage only) for each customer whose unbilled usage reached their
    threshold; billed like a period close by the next steps of the run. Its key is the run's
    moment, so a rerun at the same moment finds it, and a later one sees the usage billed."""
    rows = (await conn.execute(_OVER_THRESHOLD)).all()
    billed = await unpaid_billed(conn, [row[1] for row in rows])
    early = []
    for kind, customer_id, due, admin, own, tier in rows:
        threshold = admin if admin is not None else own if own is not None else default_micros
        unbilled = due - billed.get(customer_id, 0)
        if threshold > 0 and unbilled >= threshold:
            early.append(
                {
                    "customer_id": customer_id,
                    "period_end": at,
                    "customer_kind": kind,
                    "period_start": at,
                    "tier": tier,
                    "next_tier": tier,
                    "seats": 0,
                    "fee_micros": 0,
                    "usage_micros": unbilled,
                    "status": CloseStatus.CLAIMED,
                    "invoice_id": None,
                    "created_at": at,
                    "updated_at": at,
                }
            )
    return len(await insert_new(conn, billing_closes, early))
