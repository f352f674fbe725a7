"""Random histories of one user and one org against a simple model of the balance rules.

Each example drives the HTTP API through a sequence of staff PUTs of the buckets, plan changes,
reported API calls and clock advances, and after every step checks the balances read back
against the model, the credits against floor(value / credit price), the ledger against the
balances, and that within each billing period the credits entering a monthly bucket by grant,
plan change or refresh never exceed the largest grant of a plan held in that period (read from
the ledger itself, whatever the model says).

pytest-asyncio runs an `async def` test decorated with `@given` one example at a time in the
session's event loop, so the function-scoped fixtures are shared by every example: each
example sets the clock itself and makes its own staff user, user and org.
"""

import calendar
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.conftest import Clock, Person, World
from zoopay.accounts import service as accounts
from zoopay.db.engine import transaction
from zoopay.db.tables import ledger_entries, monthly_grants
from zoopay.ledger.service import Bucket, Customer, get_balance, ledger_sums
from zoopay.money import format_micros

Who = Literal["user", "org"]

CREDIT_PRICE = 500_000
GRANTS = {
    "free": 10_000_000,
    "pro": 100_000_000,
    "team": 250_000_000,
    "enterprise": 1_000_000_000,
}
RANK = {tier: rank for rank, tier in enumerate(GRANTS)}
MAX_MICROS = 1_000_000_000 * 1_000_000


def add_months(anchor: datetime, months: int) -> datetime:
    """The model's own calendar: anchor + months, the day clamped to the month's length."""
    year, month = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + year, month + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, _days_in(year, month)))


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@dataclass
class Account:
    """What a customer's balance should be."""

    monthly: int
    stable: int = 0
    due: int = 0
    tier: str | None = None
    anchor: datetime | None = None
    period: int = 0  # periods granted so far, counted from the anchor
    granted: int = 0  # what the current period granted the monthly bucket so far
    held: dict[int, set[str]] = field(default_factory=dict)  # tiers held, by period

    @classmethod
    def on_free(cls, now: datetime) -> "Account":
        free = GRANTS["free"]
        return cls(monthly=free, tier="free", anchor=now, granted=free, held={0: {"free"}})

    def refresh(self, now: datetime) -> None:
        """Reset monthly to the grant when one or more period boundaries have passed."""
        if self.tier is None or self.anchor is None:
            return
        period = self.period_of(now)
        if period > self.period:
            self.period = period
            self.monthly = self.granted = GRANTS[self.tier]
            self.held[period] = {self.tier}

    def period_of(self, moment: datetime) -> int:
        assert self.anchor is not None and moment >= self.anchor
        period = 0
        while add_months(self.anchor, period + 1) <= moment:
            period += 1
        return period

    def change_tier(self, tier: str, now: datetime) -> None:
        """Up: towards the new grant by at most what it grants beyond this period's grants;
        down: capped at the new grant."""
        self.refresh(now)
        if tier == self.tier:
            return
        grant = GRANTS[tier]
        if self.tier is None or RANK[tier] > RANK[self.tier]:
            headroom = max(0, grant - self.granted)
            target = max(self.monthly, min(grant, self.monthly + headroom))
            self.granted += target - self.monthly
            self.monthly = target
        else:
            self.monthly = min(self.monthly, grant)
        if self.tier is None:
            self.anchor, self.period = now, 0
        self.tier = tier
        self.held.setdefault(self.period, set()).add(tier)

    def spend(self, price: int, now: datetime) -> None:
        """Monthly first, then stable; the rest becomes due."""
        self.refresh(now)
        from_monthly = min(price, self.monthly)
        from_stable = min(price - from_monthly, self.stable)
        self.monthly -= from_monthly
        self.stable -= from_stable
        self.due += price - from_monthly - from_stable

    def next_boundary(self) -> datetime | None:
        if self.tier is None or self.anchor is None:
            return None
        return add_months(self.anchor, self.period + 1)


@dataclass
class Model:
    now: datetime
    accounts: dict[Who, Account] = field(default_factory=dict)


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class PutBalance:
    who: Who
    monthly: int | None
    stable: int | None
    style: Literal["number", "string"]


@dataclass(frozen=True)
class ChangePlan:
    who: Who
    tier: str
    method: Literal["PUT", "POST"]
    by_staff: bool


@dataclass(frozen=True)
class ReportCall:
    """A call reported by the product, at an explicit price, charged to `who`."""

    who: Who
    price: int


@dataclass(frozen=True)
class Advance:
    days: int
    hours: int


@dataclass(frozen=True)
class AdvanceToBoundary:
    """Move the clock to exactly the next period start of a customer (or nowhere if none)."""

    who: Who


Operation = PutBalance | ChangePlan | ReportCall | Advance | AdvanceToBoundary

whos: st.SearchStrategy[Who] = st.sampled_from(["user", "org"])
amounts = st.one_of(
    st.just(0),
    st.integers(min_value=0, max_value=1_000_000_000).map(lambda dollars: dollars * 1_000_000),
    st.integers(min_value=0, max_value=MAX_MICROS),
    st.integers(min_value=0, max_value=2_000_000),
    st.sampled_from(
        [
            1,
            499_999,
            500_000,
            500_001,
            10_000_000,
            100_000_000,
            250_000_000,
            1_000_000_000,
            MAX_MICROS - 1,
            MAX_MICROS,
        ]
    ),
)
put_balances = st.builds(
    PutBalance,
    who=whos,
    monthly=st.none() | amounts,
    stable=st.none() | amounts,
    style=st.sampled_from(["number", "string"]),
)
user_plans = st.builds(
    ChangePlan,
    who=st.just("user"),
    tier=st.sampled_from(["free", "pro"]),
    method=st.sampled_from(["PUT", "POST"]),
    by_staff=st.booleans(),
)
org_plans = st.builds(
    ChangePlan,
    who=st.just("org"),
    tier=st.sampled_from(["team", "enterprise"]),
    method=st.sampled_from(["PUT", "POST"]),
    by_staff=st.just(False),
)
prices = st.one_of(
    st.integers(min_value=0, max_value=1_200_000_000),
    st.sampled_from([1, 500_000, 10_000_000, 90_000_000, 100_000_000, 250_000_000]),
)
report_calls = st.builds(ReportCall, who=whos, price=prices)
advances = st.builds(
    Advance,
    days=st.integers(min_value=0, max_value=75),
    hours=st.integers(min_value=0, max_value=23),
)
operations: st.SearchStrategy[Operation] = st.one_of(
    put_balances,
    user_plans,
    org_plans,
    report_calls,
    report_calls,
    advances,
    st.builds(AdvanceToBoundary, who=whos),
)
start_times = st.one_of(
    st.sampled_from(
        [
            datetime(2026, 1, 31, 12, tzinfo=UTC),
            datetime(2028, 1, 31, 0, tzinfo=UTC),
            datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 8, 31, tzinfo=UTC),
            datetime(2028, 2, 29, 6, tzinfo=UTC),
        ]
    ),
    st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2028, 12, 31),
        timezones=st.just(UTC),
    ),
)


# --- driving the API ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cast:
    """The people and org of one example: `user` is in no org (its calls are its own), `admin`
    runs the org (its calls are the org's); `service_token` reports calls."""

    staff: Person
    user: Person
    admin: Person
    org_id: str
    service_token: str

    def customer(self, who: Who) -> Customer:
        return Customer("user", self.user.id) if who == "user" else Customer("org", self.org_id)

    def balance_path(self, who: Who) -> str:
        return (
            f"/users/{self.user.id}/payment/balance"
            if who == "user"
            else (f"/orgs/{self.org_id}/payment/balance")
        )


def amount_json(micros: int, style: Literal["number", "string"]) -> str:
    """An amount as JSON text: a bare number (integer when whole) or a decimal string."""
    dollars, fraction = divmod(micros, 1_000_000)
    text = str(dollars) if fraction == 0 else f"{dollars}.{fraction:06d}".rstrip("0")
    return text if style == "number" else json.dumps(text)


async def put_balance(client: httpx.AsyncClient, cast: Cast, op: PutBalance) -> httpx.Response:
    fields = [
        f'"{name}_api_credits_remaining_monetary_value": {amount_json(micros, op.style)}'
        for name, micros in (("monthly", op.monthly), ("stable", op.stable))
        if micros is not None
    ]
    return await client.put(
        cast.balance_path(op.who),
        content="{" + ", ".join(fields) + "}",
        headers={**cast.staff.headers, "Content-Type": "application/json"},
    )


async def change_plan(client: httpx.AsyncClient, cast: Cast, op: ChangePlan) -> httpx.Response:
    body = {"modeling_app": op.tier}
    if op.by_staff:
        path = f"/users/{cast.user.id}/payment/subscriptions"
        return await client.put(path, json=body, headers=cast.staff.headers)
    path = f"/{op.who}/payment/subscriptions"
    caller = cast.user if op.who == "user" else cast.admin
    return await client.request(op.method, path, json=body, headers=caller.headers)


async def report_call(
    client: httpx.AsyncClient, cast: Cast, op: ReportCall, now: datetime
) -> httpx.Response:
    caller = cast.user if op.who == "user" else cast.admin
    call = {
        "id": str(uuid.uuid4()),
        "user_id": caller.id,
        "endpoint": "/file/conversion",
        "method": "POST",
        "status_code": 200,
        "started_at": now.isoformat(),
        "completed_at": now.isoformat(),
        "price": format_micros(op.price),
    }
    headers = {"Authorization": f"Bearer {cast.service_token}"}
    return await client.post("/api-calls", json=call, headers=headers)


def expected_plan_status(account: Account, op: ChangePlan) -> int:
    """POST (create only) is a conflict when a paid plan already exists."""
    if op.method == "POST" and not op.by_staff and account.tier not in (None, "free"):
        return 409
    return 200


async def apply(
    client: httpx.AsyncClient, clock: Clock, cast: Cast, model: Model, op: Operation
) -> None:
    if isinstance(op, PutBalance):
        response = await put_balance(client, cast, op)
        assert response.status_code == 200, response.text
        account = model.accounts[op.who]
        account.refresh(model.now)
        account.monthly = account.monthly if op.monthly is None else op.monthly
        account.stable = account.stable if op.stable is None else op.stable
        check_statement(response.json(), account, cast, op.who)
    elif isinstance(op, ChangePlan):
        account = model.accounts[op.who]
        response = await change_plan(client, cast, op)
        status = expected_plan_status(account, op)
        assert response.status_code == status, response.text
        if status == 200:
            account.change_tier(op.tier, model.now)
            assert response.json()["modeling_app"]["name"] == op.tier
        else:
            assert response.json()["error_code"] == "conflict"
            account.refresh(model.now)
    elif isinstance(op, ReportCall):
        response = await report_call(client, cast, op, model.now)
        assert response.status_code == 201, response.text
        assert response.json()["price"] == format_micros(op.price)
        model.accounts[op.who].spend(op.price, model.now)
    elif isinstance(op, Advance):
        model.now = clock.advance(days=op.days, hours=op.hours)
    else:
        boundary = model.accounts[op.who].next_boundary()
        if boundary is not None:
            clock.now = model.now = boundary


def check_statement(body: dict[str, object], account: Account, cast: Cast, who: Who) -> None:
    """A balance response says exactly what the model says."""
    price = CREDIT_PRICE if account.tier is not None else 0
    assert body["map_id"] == cast.customer(who).id
    assert body["monthly_api_credits_remaining_monetary_value"] == format_micros(account.monthly)
    assert body["stable_api_credits_remaining_monetary_value"] == format_micros(account.stable)
    assert body["monthly_api_credits_remaining"] == (account.monthly // price if price else 0)
    assert body["stable_api_credits_remaining"] == (account.stable // price if price else 0)
    assert body["total_due"] == format_micros(account.due)
    details = body["subscription_details"]
    if account.tier is None:
        assert details is None
        assert body["subscription_id"] is None
    else:
        assert isinstance(details, dict)
        assert details["modeling_app"]["name"] == account.tier
        assert body["subscription_id"] is not None


async def check_everything(
    client: httpx.AsyncClient, engine: AsyncEngine, cast: Cast, model: Model
) -> None:
    reads = {
        "user": await client.get("/user/payment/balance", headers=cast.user.headers),
        "org": await client.get(cast.balance_path("org"), headers=cast.staff.headers),
    }
    for who, account in model.accounts.items():
        account.refresh(model.now)
        response = reads[who]
        assert response.status_code == 200, response.text
        check_statement(response.json(), account, cast, who)
    async with engine.connect() as conn:
        for who, account in model.accounts.items():
            customer = cast.customer(who)
            balance = await get_balance(conn, customer=customer)
            sums = await ledger_sums(conn, customer=customer)
            assert sums[Bucket.MONTHLY] == balance.monthly_micros == account.monthly
            assert sums[Bucket.STABLE] == balance.stable_micros == account.stable
            assert sums[Bucket.TOTAL_DUE] == balance.total_due_micros == account.due
            await check_grants(conn, customer, account)


async def check_grants(conn: AsyncConnection, customer: Customer, account: Account) -> None:
    """In each period, what entered the monthly bucket by grant, plan change or refresh is at
    most the largest grant of a plan held then; the period's record says what the model says."""
    query = select(ledger_entries.c.delta_micros, ledger_entries.c.created_at).where(
        ledger_entries.c.customer_id == customer.id,
        ledger_entries.c.bucket == "monthly",
        ledger_entries.c.reason.in_(["grant", "plan_change", "refresh"]),
        ledger_entries.c.delta_micros > 0,
    )
    entered: Counter[int] = Counter()
    for delta, created_at in await conn.execute(query):
        entered[account.period_of(created_at)] += delta
    for period, total in entered.items():
        assert total <= max(GRANTS[tier] for tier in account.held[period]), (period, total)
    rows = (
        await conn.execute(
            select(monthly_grants).where(monthly_grants.c.customer_id == customer.id)
        )
    ).mappings()
    recorded = {account.period_of(row["period_start"]): row for row in rows}
    if account.anchor is None:
        assert recorded == {}
        return
    current = recorded[account.period]
    largest = max(GRANTS[tier] for tier in account.held[account.period])
    assert (current["granted_micros"], current["largest_grant_micros"]) == (
        account.granted,
        largest,
    )


async def set_up(client: httpx.AsyncClient, world: World) -> Cast:
    staff = await world.user(staff=True)
    user, admin = await world.user(), await world.user()
    org = await world.org(admin)
    pricing = await client.put(
        f"/orgs/{org.id}/enterprise/pricing",
        json={"type": "flat", "interval": "month", "price": "5000.00"},
        headers=staff.headers,
    )
    assert pricing.status_code == 200, pricing.text
    async with transaction(world.engine) as conn:
        service_token = await accounts.create_service_token(
            conn, service_name="product", now=world.clock.now
        )
    return Cast(staff, user, admin, org.id, service_token)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(start=start_times, ops=st.lists(operations, min_size=1, max_size=20))
async def test_random_histories_match_the_model(
    client: httpx.AsyncClient,
    world: World,
    clock: Clock,
    engine: AsyncEngine,
    start: datetime,
    ops: list[Operation],
) -> None:
    clock.now = start
    cast = await set_up(client, world)
    model = Model(now=start)
    model.accounts["user"] = Account.on_free(start)
    model.accounts["org"] = Account(monthly=0)
    await check_everything(client, engine, cast, model)
    for op in ops:
        await apply(client, clock, cast, model, op)
        await check_everything(client, engine, cast, model)


async def test_a_history_across_a_clamped_month_end(
    client: httpx.AsyncClient, world: World, clock: Clock, engine: AsyncEngine
) -> None:
    """A fixed history from a Jan 31 anchor, spelled out: the refreshes land on Feb 28 and
    Mar 31, and plan changes in between cap or top up the monthly bucket."""
    clock.now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    cast = await set_up(client, world)
    model = Model(now=clock.now)
    model.accounts["user"] = Account.on_free(clock.now)
    model.accounts["org"] = Account(monthly=0)
    history: list[Operation] = [
        PutBalance("user", 3_250_001, 7, "string"),
        ChangePlan("org", "enterprise", "POST", False),
        PutBalance("org", 1_500_000_000, None, "number"),
        ChangePlan("org", "team", "PUT", False),
        AdvanceToBoundary("user"),
        ChangePlan("user", "pro", "POST", False),
        ChangePlan("user", "pro", "POST", False),
        PutBalance("user", 150_000_000, None, "number"),
        ChangePlan("user", "free", "PUT", True),
        Advance(days=27, hours=23),
        AdvanceToBoundary("user"),
        Advance(days=1, hours=0),
    ]
    for op in history:
        await apply(client, clock, cast, model, op)
        await check_everything(client, engine, cast, model)
    assert clock.now == datetime(2026, 4, 1, 12, tzinfo=UTC)
    assert model.accounts["user"].monthly == GRANTS["free"]
    assert model.accounts["user"].stable == 7
    assert model.accounts["org"].monthly == GRANTS["team"]
