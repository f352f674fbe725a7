"""A customer's balance as they see it: buckets, credits, plan and what is due."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.catalog.schemas import OptionFlat, OptionPerUser
from zoopay.catalog.service import Catalog
from zoopay.ledger.service import (
    Balance,
    Bucket,
    Customer,
    Posting,
    Reason,
    set_buckets,
)
from zoopay.subscriptions.service import (
    SubscribedPlan,
    Subscription,
    balance_with_subscription,
    current_plan,
    get_enterprise_price,
    refresh_customer,
    refresh_due,
    subscription_details,
)


@dataclass(frozen=True)
class BalanceStatement:
    balance: Balance
    subscription: Subscription | None
    subscribed: SubscribedPlan | None
    enterprise_price: OptionFlat | OptionPerUser | None
    credit_price_micros: int


async def balance_statement(
    conn: AsyncConnection, *, catalog: Catalog, customer: Customer, now: datetime
) -> BalanceStatement:
    """The balance now, refreshed first if a new monthly period has begun."""
    statement = await balance_statement_if_current(
        conn, catalog=catalog, customer=customer, now=now
    )
    if statement is not None:
        return statement
    balance, subscription = await refresh_customer(
        conn, catalog=catalog, customer=customer, now=now
    )
    return await _statement(conn, catalog=catalog, balance=balance, subscription=subscription)


async def balance_statement_if_current(
    conn: AsyncConnection, *, catalog: Catalog, customer: Customer, now: datetime
) -> BalanceStatement | None:
    """The balance, if no refresh is due (then it needs `balance_statement` in a transaction);
    it only reads, so it may run outside a transaction."""
    balance, subscription = await balance_with_subscription(conn, customer=customer)
    if refresh_due(subscription, now):
        return None
    return await _statement(conn, catalog=catalog, balance=balance, subscription=subscription)


async def set_balance(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    customer: Customer,
    monthly_micros: int | None,
    stable_micros: int | None,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> BalanceStatement:
    """Staff set either or both buckets to absolute amounts, through the ledger; `note` is the
    reason in their words, kept on the entries (the console asks for one)."""
    balance, subscription = await refresh_customer(
        conn, catalog=catalog, customer=customer, now=now
    )
    targets = {Bucket.MONTHLY: monthly_micros, Bucket.STABLE: stable_micros}
    balance = await set_buckets(
        conn,
        balance=balance,
        targets={bucket: amount for bucket, amount in targets.items() if amount is not None},
        posting=Posting(Reason.STAFF_CHANGE, actor, note=note),
        now=now,
    )
    return await _statement(conn, catalog=catalog, balance=balance, subscription=subscription)


async def _statement(
    conn: AsyncConnection, *, catalog: Catalog, balance: Balance, subscription: Subscription | None
) -> BalanceStatement:
    plan = current_plan(catalog, subscription)
    return BalanceStatement(
        balance=balance,
        subscription=subscription,
        subscribed=await subscription_details(conn, catalog=catalog, subscription=subscription),
        enterprise_price=await get_enterprise_price(conn, org=balance.customer),
        credit_price_micros=plan.credit_price_micros if plan else 0,
    )
