"""`refresh_many`: the set-based monthly refresh behind `zoopay billing refresh`."""

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, World, assert_ledger_matches_balances
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.db.tables import monthly_grants
from zoopay.ledger.service import Customer, get_balance
from zoopay.subscriptions.service import (
    change_plan,
    customers_due_for_refresh,
    refresh_customer,
    refresh_many,
)


async def _periods_granted(engine: AsyncEngine, customer_id: str) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(monthly_grants.c.customer_id == customer_id)
        return int((await conn.execute(query)).scalar_one())


async def test_refresh_many_grants_each_due_period_once_even_after_a_request_did(
    engine: AsyncEngine, catalog: Catalog, world: World
) -> None:
    people = [await world.user() for _ in range(4)]
    customers = [Customer("user", person.id) for person in people]
    async with transaction(engine) as conn:
        await change_plan(
            conn,
            catalog=catalog,
            customer=customers[1],
            tier=TierName.PRO,
            pay_annually=None,
            actor=people[1].id,
            now=START,
        )
    later = START + timedelta(days=32)
    async with transaction(engine) as conn:
        assert await customers_due_for_refresh(conn, now=START + timedelta(days=27)) == []
        due = await customers_due_for_refresh(conn, now=later)
    assert sorted(c.id for c in due) == sorted(c.id for c in customers)
    # A request refreshes one of them first, between the selection and the batch.
    async with transaction(engine) as conn:
        await refresh_customer(conn, catalog=catalog, customer=customers[0], now=later)
    async with transaction(engine) as conn:
        assert await refresh_many(conn, catalog=catalog, customers=due, now=later) == 3
    async with transaction(engine) as conn:
        assert await refresh_many(conn, catalog=catalog, customers=due, now=later) == 0
        assert await customers_due_for_refresh(conn, now=later) == []
        balances = [await get_balance(conn, customer=customer) for customer in customers]
        grants = (
            await conn.execute(
                select(monthly_grants.c.granted_micros).where(
                    monthly_grants.c.customer_id == customers[1].id,
                    monthly_grants.c.period_start == START + timedelta(days=31),
                )
            )
        ).scalar_one()
    assert [b.monthly_micros for b in balances] == [10_000_000, 100_000_000, 10_000_000, 10_000_000]
    assert grants == 100_000_000
    for customer in customers:
        assert await _periods_granted(engine, customer.id) == 2
    await assert_ledger_matches_balances(engine)
