"""Plans: who is on which tier, their monthly grants, and changes between tiers."""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.catalog.schemas import (
    OptionFlat,
    OptionPerUser,
    PlanInterval,
    TierName,
)
from zoopay.catalog.service import Catalog, Plan
from zoopay.db.bulk import insert_all, select_where_one_of, update_all
from zoopay.db.tables import balances, enterprise_prices, monthly_grants, subscriptions
from zoopay.errors import BadRequest, Conflict, NotFound, PaymentRequired
from zoopay.ledger.service import (
    Balance,
    Bucket,
    Customer,
    Posting,
    Reason,
    balance_of_row,
    lock_balance,
    post_batch,
)
from zoopay.money import from_micros, to_micros
from zoopay.records import record_of
from zoopay.subscriptions.grants import grant_new_period, grant_plan_change
from zoopay.subscriptions.periods import period_start

SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Subscription:
    id: str
    customer: Customer
    tier: TierName
    pay_annually: bool
    anchor_at: datetime
    period_start: datetime


@dataclass(frozen=True)
class SubscribedPlan:
    """The plan a subscription is on, at the price sales agreed with the org if it is sold by
    sales (None: the catalog's price)."""

    plan: Plan
    price: OptionFlat | OptionPerUser | None


async def get_subscription(conn: AsyncConnection, *, customer: Customer) -> Subscription | None:
    query = select(subscriptions).where(subscriptions.c.customer_id == customer.id)
    row = (await conn.execute(query)).mappings().first()
    return _subscription_of_row(customer, row) if row else None


async def balance_with_subscription(
    conn: AsyncConnection, *, customer: Customer
) -> tuple[Balance, Subscription | None]:
    """Both in one statement, so that they come from one committed state, never from either
    side of a concurrent plan change."""
    [found] = (await _balances_with_subscriptions(conn, customers=[customer], lock=False)).values()
    return found


async def lock_balances_with_subscriptions(
    conn: AsyncConnection, *, customers: Iterable[Customer]
) -> dict[Customer, tuple[Balance, Subscription | None]]:
    """Lock many balances, in customer id order so that concurrent transactions take their
    locks in one order and never deadlock, and read their plans in the same statement."""
    return await _balances_with_subscriptions(conn, customers=customers, lock=True)


async def _balances_with_subscriptions(
    conn: AsyncConnection, *, customers: Iterable[Customer], lock: bool
) -> dict[Customer, tuple[Balance, Subscription | None]]:
    by_id = {customer.id: customer for customer in customers}
    query = _LOCK_WITH_PLANS if lock else _READ_WITH_PLANS
    rows = await select_where_one_of(conn, query, balances.c.customer_id, sorted(by_id))
    found = {}
    for row in rows:
        customer = by_id[row["customer_id"]]
        found[customer] = balance_and_subscription_of_row(customer, row)
    for customer in by_id.values():
        if customer not in found:
            raise NotFound(f"no balance for {customer.kind} {customer.id}")
    return found


def balance_and_subscription_of_row(
    customer: Customer, row: Mapping[Any, Any]
) -> tuple[Balance, Subscription | None]:
    """From a row of `balances` joined to its subscription's `PLAN_COLUMNS`."""
    plan = {c.name: row[f"plan_{c.name}"] for c in subscriptions.c}
    subscription = _subscription_of_row(customer, plan) if plan["id"] is not None else None
    return balance_of_row(customer, row), subscription


PLAN_COLUMNS = [c.label(f"plan_{c.name}") for c in subscriptions.c]
_same_customer = subscriptions.c.customer_id == balances.c.customer_id
_READ_WITH_PLANS = (
    select(balances, *PLAN_COLUMNS)
    .select_from(balances.outerjoin(subscriptions, _same_customer))
    .order_by(balances.c.customer_id)
)
_LOCK_WITH_PLANS = _READ_WITH_PLANS.with_for_update(of=balances)


def _subscription_of_row(customer: Customer, row: Mapping[Any, Any]) -> Subscription:
    return record_of(Subscription, row, customer=customer, tier=TierName(row["tier"]))


def current_plan(catalog: Catalog, subscription: Subscription | None) -> Plan | None:
    return catalog.plan(subscription.tier) if subscription else None


async def start_free_plan(
    conn: AsyncConnection, *, catalog: Catalog, balance: Balance, actor: str, now: datetime
) -> Subscription:
    """Every new user starts on free, with the free monthly grant."""
    free = _required_plan(catalog, TierName.FREE)
    subscription = await _insert_subscription(
        conn, customer=balance.customer, plan=free, pay_annually=False, now=now
    )
    await grant_new_period(
        conn,
        balance=balance,
        plan=free,
        period_start=subscription.period_start,
        posting=Posting(Reason.GRANT, actor, subscription.id),
        now=now,
    )
    return subscription


async def change_plan(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    customer: Customer,
    tier: TierName,
    pay_annually: bool | None,
    actor: str,
    now: datetime,
    create_only: bool = False,
) -> Subscription:
    """Put a customer on a tier at once; the monthly bucket follows it through the ledger.

    With `create_only` (POST), a customer already on a paid tier is a conflict.
    """
    plan = _required_plan(catalog, tier)
    if plan.is_individual != (customer.kind == "user"):
        kind = "an individual" if plan.is_individual else "an organization"
        raise BadRequest(
            f"the {tier.value} tier is {kind} tier and cannot be put on a {customer.kind}"
        )
    balance, subscription = await refresh_customer(
        conn, catalog=catalog, customer=customer, now=now
    )
    if plan.sold_by_sales and await get_enterprise_price(conn, org=customer) is None:
        raise PaymentRequired(
            "the enterprise tier is priced by sales: contact sales to agree a price for this"
            " organization, then subscribe"
        )
    old_plan = current_plan(catalog, subscription)
    if create_only and old_plan is not None and not _is_free(old_plan):
        raise Conflict(f"this {customer.kind} already has a {old_plan.name.value} subscription")
    annually = (
        pay_annually
        if pay_annually is not None
        else bool(subscription and subscription.pay_annually)
    )
    if subscription is None:
        subscription = await _insert_subscription(
            conn, customer=customer, plan=plan, pay_annually=annually, now=now
        )
    else:
        subscription = await _update_subscription(
            conn, subscription=subscription, plan=plan, pay_annually=annually, now=now
        )
    if old_plan is None or old_plan.name != plan.name:
        await grant_plan_change(
            conn,
            balance=balance,
            old=old_plan,
            new=plan,
            period_start=subscription.period_start,
            posting=Posting(Reason.PLAN_CHANGE, actor, subscription.id),
            now=now,
        )
    return subscription


async def refresh_if_due(
    conn: AsyncConnection, *, catalog: Catalog, balance: Balance, now: datetime
) -> tuple[Balance, Subscription | None]:
    """On a locked balance: reset the monthly bucket to the grant once a new period began.

    The period start is stored, so each customer is refreshed exactly once per period; every
    path that refreshes (balance reads, metering, `zoopay billing refresh`) comes here.
    """
    subscription = await get_subscription(conn, customer=balance.customer)
    plan = current_plan(catalog, subscription)
    if subscription is None or plan is None:
        return balance, subscription
    start = period_start(subscription.anchor_at, now)
    if start <= subscription.period_start:
        return balance, subscription
    await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription.id)
        .values(period_start=start, updated_at=now)
    )
    balance = await grant_new_period(
        conn,
        balance=balance,
        plan=plan,
        period_start=start,
        posting=Posting(Reason.REFRESH, SYSTEM_ACTOR, subscription.id),
        now=now,
    )
    return balance, Subscription(**{**subscription.__dict__, "period_start": start})


# Every monthly period lasts at least 28 days: a subscription granted less than that ago cannot
# be due, so the database hands over only the ones that may be.
_SHORTEST_PERIOD = timedelta(days=28)


async def customers_due_for_refresh(conn: AsyncConnection, *, now: datetime) -> list[Customer]:
    """Customers whose monthly period has turned since their last grant, in id order."""
    query = (
        select(subscriptions)
        .where(subscriptions.c.period_start <= now - _SHORTEST_PERIOD)
        .order_by(subscriptions.c.customer_id)
    )
    due = []
    for row in (await conn.execute(query)).mappings():
        customer = Customer("org" if row["customer_kind"] == "org" else "user", row["customer_id"])
        if refresh_due(_subscription_of_row(customer, row), now):
            due.append(customer)
    return due


async def refresh_many(
    conn: AsyncConnection, *, catalog: Catalog, customers: Sequence[Customer], now: datetime
) -> int:
    """`refresh_if_due` for many customers in one transaction, set-based: one locking read of
    their balances and plans, then one statement each for the periods, the grants, the
    balances and the ledger. Decided under the locks, so a customer refreshed meanwhile by a
    request is left alone: each period is granted exactly once. Answers how many turned."""
    locked = await lock_balances_with_subscriptions(conn, customers=customers)
    periods, grants, work = [], [], []
    for balance, subscription in locked.values():
        plan = current_plan(catalog, subscription)
        if subscription is None or plan is None or not refresh_due(subscription, now):
            continue
        start = period_start(subscription.anchor_at, now)
        grant = plan.monthly_grant_micros
        periods.append({"id": subscription.id, "period_start": start, "updated_at": now})
        grants.append(
            {
                "customer_id": balance.customer.id,
                "period_start": start,
                "granted_micros": grant,
                "largest_grant_micros": grant,
                "updated_at": now,
            }
        )
        posting = Posting(Reason.REFRESH, SYSTEM_ACTOR, subscription.id)
        work.append((balance, [({Bucket.MONTHLY: grant - balance.monthly_micros}, posting)]))
    await update_all(conn, subscriptions, periods)
    await insert_all(conn, monthly_grants, grants)
    await post_batch(conn, work=work, now=now)
    return len(periods)


async def refresh_customer(
    conn: AsyncConnection, *, catalog: Catalog, customer: Customer, now: datetime
) -> tuple[Balance, Subscription | None]:
    """Lock one customer's balance and refresh it if its period has turned: the balance, locked
    and current, and the subscription. Safe to run concurrently with anything."""
    return await refresh_if_due(
        conn, catalog=catalog, balance=await lock_balance(conn, customer=customer), now=now
    )


def refresh_due(subscription: Subscription | None, now: datetime) -> bool:
    """Whether a read must take the write path to refresh first."""
    if subscription is None:
        return False
    return period_start(subscription.anchor_at, now) > subscription.period_start


async def set_enterprise_price(
    conn: AsyncConnection, *, org: Customer, price: OptionFlat | OptionPerUser, now: datetime
) -> None:
    # Writers of an org take turns on its balance row; without it two first prices at once
    # both find no row to update and both insert (a unique violation, a 500, on PostgreSQL).
    await lock_balance(conn, customer=org)
    values = {
        "price_type": price.type,
        "interval": price.interval.value,
        "price_micros": to_micros(price.price),
        "updated_at": now,
    }
    updated = await conn.execute(
        update(enterprise_prices).where(enterprise_prices.c.org_id == org.id).values(**values)
    )
    if updated.rowcount == 0:
        await conn.execute(insert(enterprise_prices).values(org_id=org.id, **values))


async def get_enterprise_price(
    conn: AsyncConnection, *, org: Customer
) -> OptionFlat | OptionPerUser | None:
    if org.kind != "org":
        return None
    row = (
        (await conn.execute(select(enterprise_prices).where(enterprise_prices.c.org_id == org.id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    price_class = OptionFlat if row["price_type"] == "flat" else OptionPerUser
    return price_class(
        interval=PlanInterval(row["interval"]), price=from_micros(row["price_micros"])
    )


async def subscription_details(
    conn: AsyncConnection, *, catalog: Catalog, subscription: Subscription | None
) -> SubscribedPlan | None:
    plan = current_plan(catalog, subscription)
    if subscription is None or plan is None:
        return None
    price = (
        await get_enterprise_price(conn, org=subscription.customer) if plan.sold_by_sales else None
    )
    return SubscribedPlan(plan, price)


def _required_plan(catalog: Catalog, tier: TierName) -> Plan:
    plan = catalog.plan(tier)
    if plan is None:
        raise BadRequest(f"the {tier.value} tier is not offered")
    return plan


def _is_free(plan: Plan) -> bool:
    return plan.name == TierName.FREE


async def _insert_subscription(
    conn: AsyncConnection, *, customer: Customer, plan: Plan, pay_annually: bool, now: datetime
) -> Subscription:
    subscription = Subscription(str(uuid.uuid4()), customer, plan.name, pay_annually, now, now)
    await conn.execute(
        insert(subscriptions).values(
            id=subscription.id,
            customer_kind=customer.kind,
            customer_id=customer.id,
            tier=plan.name.value,
            pay_annually=pay_annually,
            anchor_at=now,
            period_start=now,
            closed_through=now,
            created_at=now,
            updated_at=now,
        )
    )
    return subscription


async def _update_subscription(
    conn: AsyncConnection,
    *,
    subscription: Subscription,
    plan: Plan,
    pay_annually: bool,
    now: datetime,
) -> Subscription:
    await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription.id)
        .values(tier=plan.name.value, pay_annually=pay_annually, updated_at=now)
    )
    return Subscription(
        subscription.id,
        subscription.customer,
        plan.name,
        pay_annually,
        subscription.anchor_at,
        subscription.period_start,
    )


async def end_subscription(conn: AsyncConnection, *, customer: Customer) -> None:
    """No plan from now on: no more grants or refreshes (the balance and its ledger stay)."""
    await conn.execute(subscriptions.delete().where(subscriptions.c.customer_id == customer.id))
