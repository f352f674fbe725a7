"""Period close, the claiming part: who is closed, what each close bills, exactly once."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, World
from tests.support.billing import ENDED, owe, staff_plan
from tests.support.cli import zoopay_json
from zoopay.billing.close import claim, customers_to_close
from zoopay.billing.run import close_periods
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.db.tables import billing_closes, subscriptions
from zoopay.ledger.service import Customer, get_balance


async def _closes(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(billing_closes))).mappings().all()
    return {row["customer_id"]: dict(row) for row in rows}


async def test_a_close_bills_the_next_fee_and_the_usage_once_and_starts_the_new_period(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    spender, idle, pro = await world.user(), await world.user(), await world.user()
    admin, member = await world.user(), await world.user()
    org = await world.org(admin, member)
    await owe(engine, spender, 4_250_000)
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START)
    await staff_plan(engine, catalog, Customer("org", org.id), TierName.TEAM, START)

    early = await close_periods(engine, catalog, at=START + timedelta(days=30))
    assert (early.closed, early.nothing_due) == (0, 0)
    summary = await close_periods(engine, catalog, at=ENDED)
    assert (summary.closed, summary.nothing_due) == (6, 3)
    closes = await _closes(engine)
    period_end = datetime(2026, 2, 15, 12, tzinfo=START.tzinfo)
    expected = {
        spender.id: ("free", 1, 0, 4_250_000, "claimed"),
        idle.id: ("free", 1, 0, 0, "nothing_due"),
        admin.id: ("free", 1, 0, 0, "nothing_due"),
        member.id: ("free", 1, 0, 0, "nothing_due"),
        pro.id: ("pro", 1, 49_000_000, 0, "claimed"),
        org.id: ("team", 2, 198_000_000, 0, "claimed"),
    }
    assert {
        customer_id: (r["next_tier"], r["seats"], r["fee_micros"], r["usage_micros"], r["status"])
        for customer_id, r in closes.items()
    } == expected
    assert {r["period_end"] for r in closes.values()} == {period_end}
    assert {r["period_start"] for r in closes.values()} == {START}
    # The monthly grant of the new period started with the close.
    async with engine.connect() as conn:
        balance = await get_balance(conn, customer=spender.user.customer)
        moved = (await conn.execute(select(subscriptions.c.closed_through))).scalars().all()
    assert balance.monthly_micros == 10_000_000
    assert balance.total_due_micros == 4_250_000  # settled by paying the invoice, not by closing
    assert set(moved) == {period_end}

    again = await close_periods(engine, catalog, at=ENDED + timedelta(hours=1))
    assert again.closed == 0
    assert await _closes(engine) == closes


async def test_a_run_that_dies_midway_is_finished_by_the_next_without_closing_twice(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    people = [await world.user() for _ in range(5)]
    for person in people:
        await owe(engine, person, 1_000_000)
    async with engine.connect() as conn:
        due = await customers_to_close(conn, at=ENDED)
    assert len(due) == 5
    # The first chunk commits; the second dies before its commit (a crash, a kill).
    async with transaction(engine) as conn:
        assert len(await claim(conn, catalog, due[:2], at=ENDED)) == 2
    with pytest.raises(RuntimeError):
        async with transaction(engine) as conn:
            assert len(await claim(conn, catalog, due[2:4], at=ENDED)) == 2
            raise RuntimeError("killed")
    assert len(await _closes(engine)) == 2
    summary = await close_periods(engine, catalog, at=ENDED, chunk=2)
    assert summary.closed == 3
    closes = await _closes(engine)
    assert sorted(closes) == sorted(person.id for person in people)
    assert {r["usage_micros"] for r in closes.values()} == {1_000_000}
    # A claim handed customers already closed (a stale selection) closes nothing.
    async with transaction(engine) as conn:
        assert await claim(conn, catalog, due, at=ENDED) == []


async def test_a_downgrade_waiting_for_the_period_end_takes_effect_at_the_close(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    pro = await world.user()
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START)
    async with transaction(engine) as conn:
        await conn.execute(
            update(subscriptions)
            .where(subscriptions.c.customer_id == pro.id)
            .values(pending_tier="free")
        )
    await close_periods(engine, catalog, at=ENDED)
    [close] = (await _closes(engine)).values()
    assert (close["tier"], close["next_tier"], close["fee_micros"]) == ("pro", "free", 0)
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(subscriptions).where(subscriptions.c.customer_id == pro.id)))
            .mappings()
            .one()
        )
        balance = await get_balance(conn, customer=pro.user.customer)
    assert (row["tier"], row["pending_tier"]) == ("free", None)
    assert balance.monthly_micros == 10_000_000


async def test_billing_run_on_the_command_line_is_idempotent(
    world: World, engine: AsyncEngine, database_url: str
) -> None:
    spender = await world.user()
    await owe(engine, spender, 2_000_000)
    at = "2026-02-16T00:00:00+0000"
    first = zoopay_json(database_url, "billing", "run", "--at", at)
    # No card on file: invoiced, charged, failed (dunning retries it).
    assert (first["closed"], first["invoiced"], first["charged"], first["failed"]) == (1, 1, 1, 1)
    second = zoopay_json(database_url, "billing", "run", "--at", at)
    assert (second["closed"], second["invoiced"], second["charged"]) == (0, 0, 0)
    assert len(await _closes(engine)) == 1


async def test_a_run_at_a_moment_with_an_offset_closes_the_period_that_ended_by_it(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    # `billing run --at 2026-01-31T19:30:00-05:00` is 2026-02-01 00:30 UTC: the first period
    # of a customer who joined on Jan 1 at midnight UTC ended half an hour before.
    world.clock.now = datetime(2026, 1, 1, tzinfo=UTC)
    person = await world.user()
    await owe(engine, person, 1_000_000)
    at = datetime(2026, 1, 31, 19, 30, tzinfo=timezone(timedelta(hours=-5)))

    summary = await close_periods(engine, catalog, at=at)

    assert summary.closed == 1
    close = (await _closes(engine))[person.id]
    assert (close["period_start"], close["period_end"]) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert close["usage_micros"] == 1_000_000


async def test_a_run_after_a_gap_over_an_annual_payers_anniversary_bills_the_new_year(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    """No run from before the year's end (2027-01-15) until a month after it: the close opens
    the period of 2027-02-15, not a 12th month from the anchor, and the year that began in the
    gap went unbilled (as a monthly payer's gap bills one fee, this one bills the year)."""
    pro = await world.user()
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START, pay_annually=True)
    await close_periods(engine, catalog, at=START + timedelta(days=300))  # to 2026-10-15

    summary = await close_periods(engine, catalog, at=START + timedelta(days=400))

    assert summary.closed == 1
    async with engine.connect() as conn:
        query = select(billing_closes.c.period_end, billing_closes.c.fee_micros).order_by(
            billing_closes.c.period_end
        )
        closes = (await conn.execute(query)).all()
    assert [(end.date().isoformat(), fee) for end, fee in closes] == [
        ("2026-10-15", 0),
        ("2027-02-15", 499_800_000),  # the year from 2027-01-15: 12 x 49.00 less 15%
    ]
