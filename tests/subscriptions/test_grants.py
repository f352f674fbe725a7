"""Credits only from real grants: flipping plans after spending mints nothing.

The attack: spend the monthly credits, then upgrade, downgrade and upgrade again, each time
hoping the upgrade tops the bucket back up to the grant. Within one billing period the
credits entering the monthly bucket (grant, plan changes, refresh) must never exceed the
largest grant of a plan held in that period.
"""

import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.metering.conftest import Meter
from tests.support.cli import zoopay_json
from tests.support.plans import ENTERPRISE_PRICE, set_enterprise_price, set_monthly
from zoopay.accounts import service as accounts
from zoopay.db.engine import transaction
from zoopay.db.tables import ledger_entries, monthly_grants
from zoopay.money import format_micros

GRANTS = {"free": 10_000_000, "pro": 100_000_000, "team": 250_000_000, "enterprise": 1_000_000_000}
GRANTING = ("grant", "plan_change", "refresh")


async def new_meter(client: httpx.AsyncClient, engine: AsyncEngine, clock: Clock) -> Meter:
    async with transaction(engine) as conn:
        token = await accounts.create_service_token(conn, service_name="product", now=clock.now)
    return Meter(client, token, clock)


async def spend(meter: Meter, user: Person, micros: int) -> None:
    """One reported call with exactly this price, drawn from the caller's customer."""
    response = await meter.report(meter.call(user.id, price=format_micros(micros)))
    assert response.status_code == 201, response.text


async def flip(
    client: httpx.AsyncClient, person: Person, who: str, tier: str, monthly: int
) -> None:
    """Change plan, then read the balance back: the monthly bucket holds exactly `monthly`."""
    url = f"/{who}/payment/subscriptions"
    changed = await client.put(url, json={"modeling_app": tier}, headers=person.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["modeling_app"]["name"] == tier
    balance = await client.get(f"/{who}/payment/balance", headers=person.headers)
    assert balance.status_code == 200, balance.text
    assert balance.json()["monthly_api_credits_remaining_monetary_value"] == format_micros(monthly)


async def granted_since(
    engine: AsyncEngine, customer_id: str, since: datetime, until: datetime | None = None
) -> int:
    """What the ledger shows entering the monthly bucket by grants from `since` (to `until`)."""
    query = select(ledger_entries).where(
        ledger_entries.c.customer_id == customer_id,
        ledger_entries.c.bucket == "monthly",
        ledger_entries.c.reason.in_(GRANTING),
        ledger_entries.c.delta_micros > 0,
        ledger_entries.c.created_at >= since,
    )
    if until is not None:
        query = query.where(ledger_entries.c.created_at < until)
    async with engine.connect() as conn:
        return sum(row.delta_micros for row in await conn.execute(query))


async def grant_rows(engine: AsyncEngine, customer_id: str) -> list[dict[str, Any]]:
    query = (
        select(monthly_grants)
        .where(monthly_grants.c.customer_id == customer_id)
        .order_by(monthly_grants.c.period_start)
    )
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def test_a_user_flipping_free_and_pro_gets_one_pro_grant_per_period(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    meter = await new_meter(client, engine, clock)
    alice = await world.user()
    await spend(meter, alice, GRANTS["free"])
    # Free granted 10.00 and it is spent: pro adds only the 90.00 it grants beyond that.
    await flip(client, alice, "user", "pro", 90_000_000)
    await spend(meter, alice, 90_000_000)
    for _ in range(5):
        await flip(client, alice, "user", "free", 0)
        await flip(client, alice, "user", "pro", 0)
    assert await granted_since(engine, alice.id, START) == GRANTS["pro"]
    assert [
        (r["period_start"], r["granted_micros"], r["largest_grant_micros"])
        for r in await grant_rows(engine, alice.id)
    ] == [(START, GRANTS["pro"], GRANTS["pro"])]

    # A new period resets the bucket to pro's grant, once; flipping then grants nothing more.
    clock.now = next_period = datetime(2026, 2, 15, 12, tzinfo=UTC)
    await flip(client, alice, "user", "free", GRANTS["free"])
    await flip(client, alice, "user", "pro", GRANTS["free"])
    await spend(meter, alice, GRANTS["free"])
    await flip(client, alice, "user", "free", 0)
    await flip(client, alice, "user", "pro", 0)
    assert await granted_since(engine, alice.id, next_period) == GRANTS["pro"]
    rows = await grant_rows(engine, alice.id)
    assert [(r["period_start"], r["granted_micros"]) for r in rows] == [
        (START, GRANTS["pro"]),
        (next_period, GRANTS["pro"]),
    ]


async def test_a_user_who_spent_part_keeps_the_rest_and_gets_the_difference(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    meter = await new_meter(client, engine, clock)
    alice = await world.user()
    await spend(meter, alice, 4_000_000)
    await flip(client, alice, "user", "pro", 96_000_000)
    # A downgrade caps at the free grant; going back up adds nothing: pro's grant is used up.
    await flip(client, alice, "user", "free", GRANTS["free"])
    await flip(client, alice, "user", "pro", GRANTS["free"])
    assert await granted_since(engine, alice.id, START) == GRANTS["pro"]


async def test_an_org_flipping_team_and_enterprise_gets_one_enterprise_grant(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    meter = await new_meter(client, engine, clock)
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    await set_enterprise_price(client, staff, org.id, ENTERPRISE_PRICE)
    await flip(client, admin, "org", "team", GRANTS["team"])
    await spend(meter, admin, GRANTS["team"])
    await flip(client, admin, "org", "enterprise", 750_000_000)
    await spend(meter, admin, 750_000_000)
    for _ in range(5):
        await flip(client, admin, "org", "team", 0)
        await flip(client, admin, "org", "enterprise", 0)
    assert await granted_since(engine, org.id, START) == GRANTS["enterprise"]
    [row] = await grant_rows(engine, org.id)
    assert (row["granted_micros"], row["largest_grant_micros"]) == (GRANTS["enterprise"],) * 2


async def test_staff_puts_stay_staff_changes_and_do_not_open_grants(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """Staff may set any amount (recorded as theirs); it neither counts as a grant nor lets a
    later upgrade grant more than the period has left."""
    staff = await world.user(staff=True)
    alice = await world.user()
    await set_monthly(client, staff, f"/users/{alice.id}", "0.00")
    await flip(client, alice, "user", "pro", 90_000_000)
    await set_monthly(client, staff, f"/users/{alice.id}", "500.00")
    await flip(client, alice, "user", "free", GRANTS["free"])
    await flip(client, alice, "user", "pro", GRANTS["free"])
    async with engine.connect() as conn:
        staff_entries = (
            await conn.execute(
                select(ledger_entries.c.delta_micros, ledger_entries.c.actor)
                .where(
                    ledger_entries.c.customer_id == alice.id,
                    ledger_entries.c.reason == "staff_change",
                )
                .order_by(ledger_entries.c.id)
            )
        ).all()
    assert [tuple(e) for e in staff_entries] == [
        (-GRANTS["free"], staff.id),
        (410_000_000, staff.id),
    ]
    assert await granted_since(engine, alice.id, START) == GRANTS["pro"]


async def test_every_refresh_path_starts_the_period_with_its_grant_and_no_more(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock, database_url: str
) -> None:
    """`zoopay billing refresh` (another process) and a reported call's debit both begin a
    period on the plan's grant; flips after either grant nothing beyond it."""
    meter = await new_meter(client, engine, clock)
    alice = await world.user()
    await flip(client, alice, "user", "pro", GRANTS["pro"])
    await spend(meter, alice, GRANTS["pro"])

    assert zoopay_json(database_url, "billing", "refresh", "--at", "2026-02-16T00:00:00+0000") == {
        "refreshed": 1
    }
    clock.now = datetime(2026, 2, 16, tzinfo=UTC)
    await spend(meter, alice, GRANTS["pro"])
    await flip(client, alice, "user", "free", 0)
    await flip(client, alice, "user", "pro", 0)

    clock.now = datetime(2026, 3, 16, tzinfo=UTC)
    await spend(meter, alice, GRANTS["pro"])  # refreshes to 100.00, then draws it all
    await flip(client, alice, "user", "free", 0)
    await flip(client, alice, "user", "pro", 0)

    periods = [START, datetime(2026, 2, 15, 12, tzinfo=UTC), datetime(2026, 3, 15, 12, tzinfo=UTC)]
    rows = await grant_rows(engine, alice.id)
    assert [(r["period_start"], r["granted_micros"]) for r in rows] == [
        (start, GRANTS["pro"]) for start in periods
    ]
    for start, end in itertools.pairwise([*periods, None]):
        assert await granted_since(engine, alice.id, start, until=end) == GRANTS["pro"]
