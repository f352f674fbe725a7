"""Metering: price each reported API call and draw it from the customer's credits.

A call is recorded and debited in one transaction; many calls share one transaction when they
are recorded together (a batch, or the group commit of concurrent single reports).
"""

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.catalog.service import Catalog, Plan
from zoopay.db.bulk import insert_new, select_where_one_of
from zoopay.db.keyset import ordered_after
from zoopay.db.tables import (
    api_calls,
    balances,
    org_members,
    payment_customers,
    subscriptions,
    users,
)
from zoopay.errors import BadRequest, Conflict, NotFound, PaymentRequired, ZoopayError
from zoopay.ledger.service import (
    Balance,
    Bucket,
    Customer,
    Posting,
    Reason,
    post_batch,
)
from zoopay.metering.schemas import ApiCallReport
from zoopay.money import MAX_CALL_PRICE_MICROS, format_micros, to_micros
from zoopay.subscriptions.service import (
    PLAN_COLUMNS,
    balance_and_subscription_of_row,
    current_plan,
    lock_balances_with_subscriptions,
    refresh_due,
    refresh_if_due,
)
from zoopay.wire import parse_uuid


@dataclass(frozen=True)
class Reported:
    """A report with who sent it: the token id becomes the call's `token` if it names none."""

    report: ApiCallReport
    reporter_token_id: str


@dataclass(frozen=True)
class CallRecord:
    """A recorded call, as stored; `email` is the user's, filled in by listings."""

    id: str
    user_id: str
    org_id: str | None
    customer_id: str
    endpoint: str
    method: str
    status_code: int | None
    started_at: datetime
    completed_at: datetime
    duration_ms: int
    minutes: int
    price_micros: int
    ip_address: str
    user_agent: str
    origin: str | None
    token: str
    content_hash: str
    created_at: datetime
    email: str | None = None

    @property
    def customer(self) -> Customer:
        if self.org_id is not None:
            return Customer("org", self.customer_id)
        return Customer("user", self.customer_id)

    def row(self) -> dict[str, object]:
        return {name: value for name, value in self.__dict__.items() if name != "email"}


@dataclass(frozen=True)
class Outcome:
    """201 recorded now, 200 recorded before (same content), or an error."""

    status: int
    call: CallRecord | None = None
    error: ZoopayError | None = None


async def record_calls(
    conn: AsyncConnection, *, catalog: Catalog, reported: Sequence[Reported], now: datetime
) -> list[Outcome]:
    """Record, price and debit calls; each stands or falls alone, in request order."""
    outcomes: list[Outcome] = [Outcome(0)] * len(reported)
    firsts: dict[str, tuple[int, CallRecord]] = {}
    repeats: list[tuple[int, CallRecord]] = []
    customers = await _memberships(conn, user_ids=sorted({str(r.report.user_id) for r in reported}))
    for index, item in enumerate(reported):
        try:
            call = _priced_call(catalog, item, customers[str(item.report.user_id)], now)
        except ZoopayError as error:
            outcomes[index] = Outcome(error.status_code, error=error)
            continue
        if call.id in firsts:
            repeats.append((index, call))
        else:
            firsts[call.id] = (index, call)
    # Inserting in id order keeps concurrent transactions from deadlocking on each other's ids.
    new_ids = await insert_new(conn, api_calls, [firsts[i][1].row() for i in sorted(firsts)])
    stored = await _existing_calls(conn, call_ids=[i for i in firsts if i not in new_ids])
    for call_id, (index, call) in firsts.items():
        if call_id in new_ids:
            stored[call_id] = call
            outcomes[index] = Outcome(201, call=call)
        else:
            outcomes[index] = _replay(stored[call_id], call)
    for index, call in repeats:
        outcomes[index] = _replay(stored[call.id], call)
    await _debit(conn, catalog=catalog, calls=[firsts[i][1] for i in sorted(new_ids)], now=now)
    return outcomes


def _replay(original: CallRecord, again: CallRecord) -> Outcome:
    if original.content_hash != again.content_hash:
        message = f"API call {again.id} was already reported with other content"
        return Outcome(409, error=Conflict(message))
    return Outcome(200, call=original)


@dataclass(frozen=True)
class _Membership:
    email: str | None  # None: no such user
    org_id: str | None
    joined_at: datetime | None = None

    def org_at(self, started_at: datetime | None) -> str | None:
        """The org a call belongs to: the user's, if it started while they were a member (a
        call made before joining stays the user's, however late it is reported; one made
        after leaving finds no membership)."""
        if started_at is not None and self.joined_at is not None and started_at < self.joined_at:
            return None
        return self.org_id


async def _memberships(conn: AsyncConnection, *, user_ids: list[str]) -> dict[str, _Membership]:
    """For each user id: whether the user exists, and its org."""
    rows = await select_where_one_of(conn, _USERS_WITH_ORGS, users.c.id, user_ids)
    found = {row["id"]: _Membership(row["email"], row["org_id"], row["joined_at"]) for row in rows}
    return {user_id: found.get(user_id, _Membership(None, None)) for user_id in user_ids}


_USERS_WITH_ORGS = select(
    users.c.id, users.c.email, org_members.c.org_id, org_members.c.created_at.label("joined_at")
).select_from(users.outerjoin(org_members, org_members.c.user_id == users.c.id))


def _customer_for(
    user_id: str,
    org_id: UUID | None,
    membership: _Membership,
    started_at: datetime | None = None,
) -> Customer:
    """The org when the user belonged to one when the call started (or names it), else the
    user; without `started_at`, for a call about to start."""
    if membership.email is None:
        raise NotFound(f"no user {user_id}")
    member_of = membership.org_at(started_at)
    if org_id is not None and str(org_id) != member_of:
        when = "when the call started" if started_at is not None else "now"
        raise BadRequest(f"user {user_id} was not a member of org {org_id} {when}")
    if member_of is not None:
        return Customer("org", member_of)
    return Customer("user", user_id)


_MILLISECOND = timedelta(milliseconds=1)
# The longest call zoopay prices: a longer one is a mistake in started_at or completed_at.
MAX_CALL_DURATION = timedelta(hours=24)


def _priced_call(
    catalog: Catalog, item: Reported, membership: _Membership, now: datetime
) -> CallRecord:
    report = item.report
    call_id, user_id = str(report.id), str(report.user_id)
    customer = _customer_for(user_id, report.org_id, membership, report.started_at)
    if report.completed_at < report.started_at:
        raise BadRequest("completed_at is before started_at")
    if report.completed_at - report.started_at > MAX_CALL_DURATION:
        raise BadRequest("a call lasts at most 24 hours: completed_at is too long after started_at")
    # As stored, in UTC: a 201 shows what a 200 will.
    started_at, completed_at = (
        report.started_at.astimezone(UTC),
        report.completed_at.astimezone(UTC),
    )
    duration_ms = (completed_at - started_at) // _MILLISECOND
    minutes = math.ceil(duration_ms / 60_000)
    return CallRecord(
        id=call_id,
        user_id=user_id,
        org_id=customer.id if customer.kind == "org" else None,
        customer_id=customer.id,
        endpoint=report.endpoint,
        method=report.method.value,
        status_code=report.status_code,
        started_at=started_at,
        completed_at=completed_at,
        duration_ms=duration_ms,
        minutes=minutes,
        price_micros=_price_micros(catalog, report, minutes),
        ip_address=report.ip_address,
        user_agent=report.user_agent,
        origin=report.origin,
        token=str(report.token) if report.token else item.reporter_token_id,
        content_hash=_content_hash(report, call_id, user_id, started_at, completed_at),
        created_at=now,
        email=membership.email,
    )


def _price_micros(catalog: Catalog, report: ApiCallReport, minutes: int) -> int:
    if report.price is not None:
        price = to_micros(report.price)
    else:
        price = catalog.call_price(report.endpoint).of(minutes)
    if price > MAX_CALL_PRICE_MICROS:
        raise BadRequest(
            f"a call costs at most {format_micros(MAX_CALL_PRICE_MICROS)} USD;"
            f" this one would cost {format_micros(price)} USD"
        )
    return price


def _content_hash(
    report: ApiCallReport, call_id: str, user_id: str, started_at: datetime, completed_at: datetime
) -> str:
    """What makes two reports of one id the same report (instants compared in UTC)."""
    canonical = (
        call_id,
        user_id,
        str(report.org_id),
        report.endpoint,
        report.method.value,
        report.status_code,
        started_at.isoformat(),
        completed_at.isoformat(),
        str(report.price),
        report.ip_address,
        report.user_agent,
        report.origin,
    )
    return hashlib.sha256(repr(canonical).encode()).hexdigest()


async def _existing_calls(conn: AsyncConnection, *, call_ids: list[str]) -> dict[str, CallRecord]:
    if not call_ids:
        return {}
    rows = await select_where_one_of(conn, _CALLS_WITH_EMAIL, api_calls.c.id, call_ids)
    return {row["id"]: CallRecord(**row) for row in rows}


async def _debit(
    conn: AsyncConnection, *, catalog: Catalog, calls: list[CallRecord], now: datetime
) -> None:
    """Draw new calls from their customers' credits: a few statements for any number."""
    by_customer: dict[Customer, list[CallRecord]] = defaultdict(list)
    for call in calls:
        by_customer[call.customer].append(call)
    if not by_customer:
        return
    work = []
    locked = await lock_balances_with_subscriptions(conn, customers=by_customer)
    for customer, (balance, subscription) in locked.items():
        if refresh_due(subscription, now):
            balance, _ = await refresh_if_due(conn, catalog=catalog, balance=balance, now=now)
        work.append((balance, _draws(balance, by_customer[customer])))
    await post_batch(conn, work=work, now=now)


def _draws(balance: Balance, calls: list[CallRecord]) -> list[tuple[dict[Bucket, int], Posting]]:
    """Monthly first, then stable, then what is left becomes due."""
    monthly, stable = balance.monthly_micros, balance.stable_micros
    movements = []
    for call in calls:
        due = call.price_micros
        from_monthly = min(due, monthly)
        due -= from_monthly
        from_stable = min(due, stable)
        due -= from_stable
        monthly, stable = monthly - from_monthly, stable - from_stable
        deltas = {Bucket.MONTHLY: -from_monthly, Bucket.STABLE: -from_stable, Bucket.TOTAL_DUE: due}
        movements.append((deltas, Posting(Reason.API_CALL, call.user_id, call.id)))
    return movements


@dataclass(frozen=True)
class Standing:
    """A customer's position for the next call, as of now (a refresh due counts as done)."""

    customer: Customer
    monthly_micros: int
    stable_micros: int
    total_due_micros: int
    plan: Plan | None
    # Dunning gave up on an invoice: no calls until it is paid, whatever the plan.
    delinquent: bool = False

    @property
    def allowed(self) -> bool:
        if self.delinquent:
            return False
        if self.plan is not None and self.plan.allows_overage:
            return True
        return self.total_due_micros == 0 and self.monthly_micros + self.stable_micros > 0

    def refusal(self) -> PaymentRequired:
        who = f"this {self.customer.kind}"
        plan = f"the {self.plan.name.value} plan" if self.plan else "no plan"
        if self.delinquent:
            return PaymentRequired(
                f"{who} has an unpaid invoice that could not be charged: pay it (GET"
                " /user/payment/invoices lists it; an org's admin pays the org's) or update the"
                " payment method, and calls are allowed again at once"
            )
        if self.total_due_micros > 0:
            owed = format_micros(self.total_due_micros)
            return PaymentRequired(
                f"{who} is on {plan} and owes ${owed} for calls beyond its credits: pay it, buy"
                " credits or upgrade to a plan that bills overage to make more calls"
            )
        return PaymentRequired(
            f"{who} has no API credits left on {plan}: buy credits or upgrade to make more calls"
        )


async def standing(
    conn: AsyncConnection, *, catalog: Catalog, user_id: UUID, org_id: UUID | None, now: datetime
) -> Standing:
    """Who would pay for a call by this user, and what they have; reads, never writes."""
    rows = await select_where_one_of(conn, _USER_WITH_BALANCE, users.c.id, [str(user_id)])
    row = rows[0] if rows else {"user_email": None, "user_org_id": None}
    customer = _customer_for(
        str(user_id), org_id, _Membership(row["user_email"], row["user_org_id"])
    )
    balance, subscription = balance_and_subscription_of_row(customer, row)
    plan = current_plan(catalog, subscription)
    monthly = balance.monthly_micros
    if plan is not None and refresh_due(subscription, now):
        monthly = plan.monthly_grant_micros
    delinquent = bool(row.get("customer_delinquent"))
    return Standing(
        customer, monthly, balance.stable_micros, balance.total_due_micros, plan, delinquent
    )


# Who pays for a user's calls, with what, on which plan: one statement, one committed state.
_USER_WITH_BALANCE = select(
    users.c.email.label("user_email"),
    org_members.c.org_id.label("user_org_id"),
    balances,
    *PLAN_COLUMNS,
    payment_customers.c.delinquent.label("customer_delinquent"),
).select_from(
    users.outerjoin(org_members, org_members.c.user_id == users.c.id)
    .outerjoin(balances, balances.c.customer_id == func.coalesce(org_members.c.org_id, users.c.id))
    .outerjoin(subscriptions, subscriptions.c.customer_id == balances.c.customer_id)
    .outerjoin(payment_customers, payment_customers.c.customer_id == balances.c.customer_id)
)


async def list_calls(
    conn: AsyncConnection,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    descending: bool = False,
    user_id: str | None = None,
    org_id: str | None = None,
    endpoint_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CallRecord]:
    """Calls in (created_at, id) order, of one user, one org, or everyone; optionally only
    those to endpoints starting with `endpoint_prefix`, recorded from `since` to `until`."""
    query = _CALLS_WITH_EMAIL.limit(limit)
    if user_id is not None:
        query = query.where(api_calls.c.user_id == user_id)
    if org_id is not None:
        query = query.where(api_calls.c.org_id == org_id)
    if endpoint_prefix:
        query = query.where(api_calls.c.endpoint.startswith(endpoint_prefix, autoescape=True))
    if since is not None:
        query = query.where(api_calls.c.created_at >= since)
    if until is not None:
        query = query.where(api_calls.c.created_at < until)
    key = (api_calls.c.created_at, api_calls.c.id)
    query = ordered_after(query, key, after, descending=descending)
    return [CallRecord(**row) for row in (await conn.execute(query)).mappings()]


async def get_call(
    conn: AsyncConnection, *, call_id: str, user_id: str | None = None, org_id: str | None = None
) -> CallRecord:
    """One call, if it is the user's or the org's (when either is given)."""
    query = _CALLS_WITH_EMAIL.where(api_calls.c.id == parse_uuid(call_id, "API call"))
    if user_id is not None:
        query = query.where(api_calls.c.user_id == user_id)
    if org_id is not None:
        query = query.where(api_calls.c.org_id == org_id)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no API call {call_id}")
    return CallRecord(**row)


_CALLS_WITH_EMAIL = select(api_calls, users.c.email).join(users, users.c.id == api_calls.c.user_id)
