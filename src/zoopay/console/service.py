"""The console's sign-in links and sessions, and the read-only figures its pages show.

A link and a session are random secrets of 256 bits shown once (in a URL, in a cookie) and
stored only as SHA-256 hashes, as API tokens are. A session stands for the same Principal an
API token of its user would: the console calls the API's services with it, no others.
"""

import hashlib
import hmac
import re
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Select, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.service import Principal, User, authenticate
from zoopay.catalog.schemas import OptionFlat, OptionPerUser
from zoopay.catalog.service import Catalog
from zoopay.db.tables import (
    api_calls,
    api_tokens,
    balances,
    console_links,
    console_sessions,
    enterprise_prices,
    invoices,
    org_members,
    orgs,
    payment_customers,
    subscriptions,
    users,
)
from zoopay.errors import BadRequest, Conflict, Unauthorized
from zoopay.ledger.service import Customer
from zoopay.money import to_micros

LINK_LIFETIME = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
_LINK_PREFIX = "zcl_"
_SESSION_PREFIX = "zcs_"


def _secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def _issue_secret(
    conn: AsyncConnection,
    table: Table,
    *,
    prefix: str,
    lifetime: timedelta,
    now: datetime,
    **columns: str | None,
) -> tuple[str, datetime]:
    """A new sign-in link or session (a row of `table`, with its own `columns`): its secret,
    stored only as a hash, and when it expires."""
    secret = _secret(prefix)
    expires_at = now + lifetime
    await conn.execute(
        insert(table).values(
            id=str(uuid.uuid4()),
            secret_hash=_hash(secret),
            **columns,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return secret, expires_at


@dataclass(frozen=True)
class SignInLink:
    secret: str  # shown once, in the URL
    expires_at: datetime


async def create_link(
    conn: AsyncConnection, *, user: User, created_by: str, now: datetime
) -> SignInLink:
    """A single-use link that signs `user` in to the console, valid for LINK_LIFETIME."""
    if user.deleted_at is not None:
        raise Conflict(f"{user.email} is deleted")
    secret, expires_at = await _issue_secret(
        conn,
        console_links,
        prefix=_LINK_PREFIX,
        lifetime=LINK_LIFETIME,
        now=now,
        user_id=user.id,
        created_by=created_by,
    )
    return SignInLink(secret, expires_at)


def billing_page(kind: str, return_url: str | None) -> str:
    """The console's payment-methods page of a user or an org, with the back link kept."""
    page = f"/console/{kind}/billing"
    return f"{page}?{urlencode({'return_url': return_url})}" if return_url else page


# Where a sign-in link may lead: a console page, never another site (`//host` or a scheme).
_NEXT_PAGE = re.compile(r"/console/[a-z]+(/[a-z]+)*(\?return_url=[^\s#]{1,2048})?")


def next_page(text: str) -> str:
    """The page to open after sign-in: `text` if it is a console page, else the overview."""
    if _NEXT_PAGE.fullmatch(text) and "//" not in text.split("?", 1)[0]:
        return text
    return "/console/"


def link_path(secret: str, next_page: str | None = None) -> str:
    """The path of a sign-in link (relative: never built from a request's Host header)."""
    query = {"secret": secret} | ({"next": next_page} if next_page else {})
    return f"/console/link?{urlencode(query)}"


@dataclass(frozen=True)
class OpenedSession:
    secret: str  # shown once, in the cookie
    expires_at: datetime


_BAD_LINK = "this sign-in link is not valid: it was used already or has expired; ask for a new one"


async def redeem_link(conn: AsyncConnection, *, secret: str, now: datetime) -> OpenedSession:
    """Spend a link (once: the UPDATE that marks it used is the only way in) for a session."""
    if not secret.startswith(_LINK_PREFIX) or len(secret) > 100:
        raise Unauthorized(_BAD_LINK)
    spent = await conn.execute(
        update(console_links)
        .where(
            console_links.c.secret_hash == _hash(secret),
            console_links.c.used_at.is_(None),
            console_links.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(console_links.c.user_id)
    )
    user_id = spent.scalar()
    if user_id is None:
        raise Unauthorized(_BAD_LINK)
    return await _open_session(conn, user_id=user_id, token_id=None, now=now)


async def sign_in_with_token(conn: AsyncConnection, *, token: str, now: datetime) -> OpenedSession:
    """A session for the user of a valid API token; it ends when the token is revoked."""
    principal = await authenticate(conn, token=token.strip()) if token.strip() else None
    if principal is None:
        raise Unauthorized("the API token is not valid")
    if principal.user is None:
        raise BadRequest("the console is for people: a service's token cannot sign in")
    return await _open_session(
        conn, user_id=principal.user.id, token_id=principal.token_id, now=now
    )


async def _open_session(
    conn: AsyncConnection, *, user_id: str, token_id: str | None, now: datetime
) -> OpenedSession:
    secret, expires_at = await _issue_secret(
        conn,
        console_sessions,
        prefix=_SESSION_PREFIX,
        lifetime=SESSION_LIFETIME,
        now=now,
        user_id=user_id,
        token_id=token_id,
    )
    return OpenedSession(secret, expires_at)


@dataclass(frozen=True)
class ConsoleSession:
    id: str
    principal: Principal
    csrf_token: str
    expires_at: datetime

    @property
    def user(self) -> User:
        assert self.principal.user is not None
        return self.principal.user


def csrf_token(session_secret: str) -> str:
    """The form token of a session: derived from its secret, which only its cookie holds, so a
    page on another site can neither read nor forge it."""
    return hmac.new(session_secret.encode(), b"zoopay console csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_secret: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_secret), presented)


async def find_session(
    conn: AsyncConnection, *, secret: str, now: datetime
) -> ConsoleSession | None:
    """The live session of this cookie: not ended or expired, its user not deleted, and the
    token it was opened with (if any) not revoked."""
    if not secret.startswith(_SESSION_PREFIX) or len(secret) > 100:
        return None
    query = (
        select(
            console_sessions.c.id.label("session_id"),
            console_sessions.c.token_id,
            console_sessions.c.expires_at.label("session_expires_at"),
            api_tokens.c.revoked_at,
            users,
        )
        .select_from(
            console_sessions.join(users, users.c.id == console_sessions.c.user_id).outerjoin(
                api_tokens, api_tokens.c.id == console_sessions.c.token_id
            )
        )
        .where(
            console_sessions.c.secret_hash == _hash(secret),
            console_sessions.c.ended_at.is_(None),
            console_sessions.c.expires_at > now,
            users.c.deleted_at.is_(None),
        )
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None or (row["token_id"] is not None and row["revoked_at"] is not None):
        return None
    user = User(**{name: row[name] for name in User.__dataclass_fields__})
    # The token the API would see: the one signed in with, or the session itself.
    principal = Principal(row["token_id"] or row["session_id"], user, None)
    return ConsoleSession(
        row["session_id"], principal, csrf_token(secret), row["session_expires_at"]
    )


async def end_session(conn: AsyncConnection, *, secret: str, now: datetime) -> None:
    await conn.execute(
        update(console_sessions)
        .where(
            console_sessions.c.secret_hash == _hash(secret), console_sessions.c.ended_at.is_(None)
        )
        .values(ended_at=now)
    )


# --- figures the pages show (reads only) ---

# The chart reads at most this many calls of a period: a page must not scan millions of rows.
MAX_CHART_CALLS = 20_000


@dataclass(frozen=True)
class DailyUsage:
    days: list[date]
    # category -> micro-dollars per day, in `days` order
    by_category: dict[str, list[int]]
    calls: int
    truncated: bool

    @property
    def totals(self) -> list[int]:
        return [
            sum(values[i] for values in self.by_category.values()) for i in range(len(self.days))
        ]


def _charged_to(customer: Customer):  # type: ignore[no-untyped-def]
    if customer.kind == "org":
        return api_calls.c.org_id == customer.id
    return (api_calls.c.user_id == customer.id) & api_calls.c.org_id.is_(None)


async def daily_usage(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    customer: Customer,
    since: datetime,
    until: datetime,
    zone: ZoneInfo,
) -> DailyUsage:
    """What the customer was charged per day (in the viewer's zone) and endpoint category,
    for the calls recorded from `since` to `until`."""
    query = (
        select(api_calls.c.created_at, api_calls.c.endpoint, api_calls.c.price_micros)
        .where(
            _charged_to(customer), api_calls.c.created_at >= since, api_calls.c.created_at < until
        )
        .order_by(api_calls.c.created_at)
        .limit(MAX_CHART_CALLS + 1)
    )
    rows = (await conn.execute(query)).all()
    first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    index = {day: n for n, day in enumerate(days)}
    by_category: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for created_at, endpoint, price in rows[:MAX_CHART_CALLS]:
        day = created_at.astimezone(zone).date()
        if day in index:
            by_category[_category(catalog, endpoint)][index[day]] += int(price)
    return DailyUsage(
        days, dict(by_category), min(len(rows), MAX_CHART_CALLS), len(rows) > MAX_CHART_CALLS
    )


def _category(catalog: Catalog, endpoint: str) -> str:
    return catalog.category(endpoint) or "other"


@dataclass(frozen=True)
class CustomerHit:
    kind: str  # "user" or "org"
    id: str
    email: str | None
    name: str | None


MAX_HITS = 50


async def actor_emails(conn: AsyncConnection, *, actors: set[str]) -> dict[str, str]:
    """The email of each actor that is a user (a ledger entry's `actor` is a user id, or a
    word such as "system"); others are left out."""
    ids = sorted(actor for actor in actors if _UUID.fullmatch(actor))
    if not ids:
        return {}
    query = select(users.c.id, users.c.email).where(users.c.id.in_(ids))
    return {str(user_id): str(email) for user_id, email in await conn.execute(query)}


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def find_customers(conn: AsyncConnection, *, text: str) -> list[CustomerHit]:
    """Staff search: users and orgs by id (exact), email or name (containing the text)."""
    text = text.strip()
    if not text:
        return []
    if len(text) > 320:
        raise BadRequest("search for at most 320 characters")
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    user_query = _matching(users, users.c.email, text, pattern).order_by(users.c.email)
    org_query = _matching(orgs, orgs.c.billing_email, text, pattern).order_by(orgs.c.name)
    hits = [CustomerHit("user", *row) for row in (await conn.execute(user_query)).all()]
    hits += [CustomerHit("org", *row) for row in (await conn.execute(org_query)).all()]
    return hits


def _matching(table: Table, email: Column[str], text: str, pattern: str) -> Select[Any]:
    """A search's hits in users or orgs: the id exactly, or the email or name containing it."""
    return (
        select(table.c.id, email, table.c.name)
        .where(
            (table.c.id == text)
            | func.lower(email).like(pattern, escape="\\")
            | func.lower(func.coalesce(table.c.name, "")).like(pattern, escape="\\")
        )
        .limit(MAX_HITS)
    )


@dataclass(frozen=True)
class BusinessOverview:
    customers_by_plan: dict[str, int]
    monthly_recurring_micros: int
    usage_billed_micros: int
    total_due_micros: int
    customers_with_money_due: int
    open_invoices: int
    failing_invoices: int
    delinquent_customers: int


async def business_overview(
    conn: AsyncConnection, *, catalog: Catalog, since: datetime
) -> BusinessOverview:
    """Staff's view of the business: plans held; monthly recurring revenue at the catalog's
    prices (per member for a per-user price; an annual payer's discount spread over 12 months;
    enterprise at the price negotiated); usage billed since `since`; what customers owe."""
    members = (
        select(org_members.c.org_id, func.count().label("members"))
        .group_by(org_members.c.org_id)
        .subquery()
    )
    columns = (
        subscriptions.c.tier,
        subscriptions.c.pay_annually,
        enterprise_prices.c.price_type,
        enterprise_prices.c.interval,
        enterprise_prices.c.price_micros,
        func.coalesce(members.c.members, 1),
    )
    query = (
        select(*columns, func.count())
        .select_from(
            subscriptions.outerjoin(
                enterprise_prices, enterprise_prices.c.org_id == subscriptions.c.customer_id
            ).outerjoin(members, members.c.org_id == subscriptions.c.customer_id)
        )
        .group_by(*columns)
    )
    by_plan: dict[str, int] = {}
    recurring = 0
    for tier, annually, kind, interval, negotiated, seats, count in (
        await conn.execute(query)
    ).all():
        by_plan[tier] = by_plan.get(tier, 0) + int(count)
        plan = catalog.plan(tier)
        if plan is None:
            continue
        listed: tuple[str, str, int, int | None]
        if plan.sold_by_sales:
            if negotiated is None:
                continue
            listed = (kind, interval, int(negotiated), None)
        else:
            price = plan.terms.price
            assert isinstance(price, OptionFlat | OptionPerUser)
            listed = (
                price.type,
                price.interval.value,
                to_micros(price.price),
                plan.terms.annual_discount,
            )
        recurring += _monthly_micros(*listed, annually=bool(annually), seats=int(seats)) * int(
            count
        )
    usage = (
        await conn.execute(
            select(func.coalesce(func.sum(api_calls.c.price_micros), 0)).where(
                api_calls.c.created_at >= since
            )
        )
    ).scalar_one()
    due = (
        await conn.execute(
            select(func.coalesce(func.sum(balances.c.total_due_micros), 0), func.count()).where(
                balances.c.total_due_micros > 0
            )
        )
    ).one()
    is_open = invoices.c.status == "open"
    open_invoices, failing = (
        await conn.execute(
            select(func.count(), func.count().filter(invoices.c.attempt_count > 0)).where(is_open)
        )
    ).one()
    delinquent = (
        await conn.execute(select(func.count()).where(payment_customers.c.delinquent.is_(True)))
    ).scalar_one()
    return BusinessOverview(
        by_plan,
        recurring,
        int(usage),
        int(due[0]),
        int(due[1]),
        int(open_invoices),
        int(failing),
        int(delinquent),
    )


async def failed_payments(conn: AsyncConnection, *, customer: Customer) -> int:
    """The customer's open invoices whose charge was tried and failed."""
    query = select(func.count()).where(
        invoices.c.customer_id == customer.id,
        invoices.c.status == "open",
        invoices.c.attempt_count > 0,
    )
    return int((await conn.execute(query)).scalar_one())


def _monthly_micros(
    kind: str, interval: str, micros: int, discount: int | None, *, annually: bool, seats: int
) -> int:
    """One subscription's price per month, in micro-dollars."""
    amount = micros * seats if kind == "per_user" else micros
    if interval == "year":
        return amount // 12
    if interval == "week":
        return amount * 52 // 12
    if interval == "day":
        return amount * 365 // 12
    if annually and discount:
        return amount * (100 - discount) // 100
    return amount
