"""`billing run`: invoices numbered without gaps, charged, settled; dunning to delinquency."""

from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.support.billing import add_card, bill, embedded, staff_plan
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.db.tables import billing_closes, invoices, processor_charges
from zoopay.ledger.service import Bucket, Posting, Reason, get_balance, lock_balance, post

ENDED = START + timedelta(days=32)


async def _owe(engine: AsyncEngine, person: Person, micros: int) -> None:
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=person.user.customer)
        deltas = {Bucket.MONTHLY: -balance.monthly_micros, Bucket.TOTAL_DUE: micros}
        await post(
            conn,
            balance=balance,
            deltas=deltas,
            posting=Posting(Reason.API_CALL, "test"),
            now=START,
        )


async def _invoices(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(invoices).order_by(invoices.c.number))
        return [dict(row) for row in rows.mappings()]


async def _charged_cents(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        query = select(processor_charges.c.amount_cents).where(
            processor_charges.c.status == "succeeded"
        )
        return sorted(int(cents) for cents in (await conn.execute(query)).scalars())


async def test_a_run_invoices_charges_and_settles_each_customer_once(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = embedded(engine, clock)
    pro, spender, idle = await world.user(), await world.user(), await world.user()
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START)
    for person in (pro, spender):
        await add_card(engine, processor, person.user.customer, START)
    await _owe(engine, spender, 4_250_000)

    clock.now = ENDED
    summary = await bill(engine, catalog, processor, ENDED)
    assert (summary.closed, summary.nothing_due, summary.invoiced) == (3, 1, 2)
    assert (summary.charged, summary.paid, summary.failed) == (2, 2, 0)
    issued = await _invoices(engine)
    assert [i["number"] for i in issued] == ["ZP-000001", "ZP-000002"]
    by_customer = {i["customer_id"]: i for i in issued}
    assert by_customer[pro.id]["total_micros"] == 49_000_000
    assert by_customer[spender.id]["total_micros"] == 4_250_000
    assert {i["status"] for i in issued} == {"paid"}
    assert idle.id not in by_customer  # a free customer with nothing due gets no invoice
    assert await _charged_cents(engine) == [425, 4900]
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=spender.user.customer)).total_due_micros == 0

    again = await bill(engine, catalog, processor, ENDED + timedelta(hours=2))
    assert (again.closed, again.invoiced, again.charged, again.retried) == (0, 0, 0, 0)
    assert len(await _invoices(engine)) == 2
    assert await _charged_cents(engine) == [425, 4900]


async def test_a_run_killed_between_invoicing_and_charging_is_finished_by_the_next(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    from tests.support.billing import TERMS
    from zoopay.billing.run import RunSummary, close_periods, invoice_closes

    processor = embedded(engine, clock)
    people = [await world.user() for _ in range(3)]
    for person in people:
        await add_card(engine, processor, person.user.customer, START)
        await _owe(engine, person, 1_000_000)
    clock.now = ENDED
    # The first run closes and invoices, then dies before charging anything.
    summary = RunSummary()
    await close_periods(engine, catalog, at=ENDED, summary=summary)
    await invoice_closes(engine, TERMS, at=ENDED, summary=summary)
    assert summary.invoiced == 3 and await _charged_cents(engine) == []
    rerun = await bill(engine, catalog, processor, ENDED)
    assert (rerun.closed, rerun.invoiced, rerun.charged, rerun.paid) == (0, 0, 3, 3)
    assert await _charged_cents(engine) == [100, 100, 100]
    assert len(await _invoices(engine)) == 3


async def test_dunning_retries_on_schedule_then_makes_the_customer_delinquent(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    client: httpx.AsyncClient,
) -> None:
    processor = embedded(engine, clock)
    pro = await world.user()
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START)
    await add_card(engine, processor, pro.user.customer, START, "pm_card_chargeCustomerFail")
    service = await world.user(staff=True)

    async def authorize() -> httpx.Response:
        body = {"user_id": pro.id, "endpoint": "/file/conversion"}
        return await client.post("/api-calls/authorize", headers=service.headers, json=body)

    clock.now = ENDED
    first = await bill(engine, catalog, processor, ENDED)
    assert (first.invoiced, first.charged, first.failed, first.paid) == (1, 1, 1, 0)
    [invoice] = await _invoices(engine)
    assert invoice["status"] == "open"
    assert (await authorize()).status_code == 200  # still within the schedule
    # Nothing is due before the first retry day; then one retry per scheduled day.
    assert (await bill(engine, catalog, processor, ENDED + timedelta(hours=23))).retried == 0
    for day, retried in [(1, 1), (2, 0), (3, 1), (5, 1)]:
        clock.now = ENDED + timedelta(days=day)
        run = await bill(engine, catalog, processor, clock.now)
        assert (run.retried, run.uncollectible) == (retried, 0), day
        assert (await authorize()).status_code == 200
    clock.now = ENDED + timedelta(days=7)
    last = await bill(engine, catalog, processor, clock.now)
    assert (last.retried, last.uncollectible) == (1, 1)
    [invoice] = await _invoices(engine)
    assert (invoice["status"], invoice["attempt_count"]) == ("uncollectible", 5)
    refused = await authorize()
    assert refused.status_code == 402
    assert refused.json()["error_code"] == "payment_required"
    assert "unpaid invoice" in refused.json()["message"]
    assert await _charged_cents(engine) == []
    # Later runs try it no more.
    clock.now = ENDED + timedelta(days=20)
    assert (await bill(engine, catalog, processor, clock.now)).retried == 0
    async with engine.connect() as conn:
        closes = (await conn.execute(select(billing_closes))).mappings().all()
    assert [c["invoice_id"] for c in closes if c["customer_id"] == pro.id] == [invoice["id"]]


async def test_usage_past_the_threshold_is_invoiced_early_and_not_again_at_the_close(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = embedded(engine, clock)
    payer, failing, below = await world.user(), await world.user(), await world.user()
    await add_card(engine, processor, payer.user.customer, START)
    await add_card(engine, processor, failing.user.customer, START, "pm_card_chargeCustomerFail")
    await _owe(engine, payer, 120_000_000)  # the default threshold is 100.00
    await _owe(engine, failing, 150_000_000)
    await _owe(engine, below, 99_999_999)
    clock.now = START + timedelta(days=10)
    early = await bill(engine, catalog, processor, clock.now)
    assert (early.closed, early.early, early.invoiced, early.paid, early.failed) == (0, 2, 2, 1, 1)
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=payer.user.customer)).total_due_micros == 0
    assert await _charged_cents(engine) == [12000]
    # Again the same day: nothing new is billed early.
    assert (await bill(engine, catalog, processor, clock.now + timedelta(hours=1))).early == 0
    clock.now = ENDED
    close = await bill(engine, catalog, processor, ENDED)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(billing_closes))).mappings().all()
    at_close = {
        r["customer_id"]: r["usage_micros"] for r in rows if r["period_end"] != r["period_start"]
    }
    # The failing customer's 150.00 is on its open early invoice: the close bills none of it.
    assert at_close[failing.id] == 0 and at_close[payer.id] == 0
    assert at_close[below.id] == 99_999_999
    assert close.early == 0
