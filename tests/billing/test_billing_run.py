"""`billing run`: invoices numbered without gaps, charged, settled; dunning to delinquency."""

from collections.abc import Sequence
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, World
from tests.support.billing import ENDED, add_card, bill, charged_cents, embedded, owe, staff_plan
from tests.support.processor import processor_customer
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.db.tables import billing_closes, invoices, processor_charges
from zoopay.invoicing.service import Attempt, list_attempts
from zoopay.journal.service import Account, AccountKind, account_balance
from zoopay.ledger.service import get_balance
from zoopay.payments.service import NO_PROCESSOR, find_payment_customer, processor_customer_id
from zoopay.processors.base import (
    ChargeRequest,
    ChargeResult,
    CustomerRequest,
    CustomerResult,
    ProcessorError,
    ProcessorUnavailable,
)
from zoopay.processors.embedded import EmbeddedProcessor


async def _invoices(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(invoices).order_by(invoices.c.number))
        return [dict(row) for row in rows.mappings()]


async def test_a_run_invoices_charges_and_settles_each_customer_once(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = embedded(engine, clock)
    pro, spender, idle = await world.user(), await world.user(), await world.user()
    await staff_plan(engine, catalog, pro.user.customer, TierName.PRO, START)
    for person in (pro, spender):
        await add_card(engine, processor, person.user.customer, START)
    await owe(engine, spender, 4_250_000)

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
    assert await charged_cents(engine) == [425, 4900]
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=spender.user.customer)).total_due_micros == 0

    again = await bill(engine, catalog, processor, ENDED + timedelta(hours=2))
    assert (again.closed, again.invoiced, again.charged, again.retried) == (0, 0, 0, 0)
    assert len(await _invoices(engine)) == 2
    assert await charged_cents(engine) == [425, 4900]


async def test_a_run_killed_between_invoicing_and_charging_is_finished_by_the_next(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    from tests.support.billing import TERMS
    from zoopay.billing.run import RunSummary, close_periods, invoice_closes

    processor = embedded(engine, clock)
    people = [await world.user() for _ in range(3)]
    for person in people:
        await add_card(engine, processor, person.user.customer, START)
        await owe(engine, person, 1_000_000)
    clock.now = ENDED
    # The first run closes and invoices, then dies before charging anything.
    summary = RunSummary()
    await close_periods(engine, catalog, at=ENDED, summary=summary)
    await invoice_closes(engine, TERMS, at=ENDED, summary=summary)
    assert summary.invoiced == 3 and await charged_cents(engine) == []
    rerun = await bill(engine, catalog, processor, ENDED)
    assert (rerun.closed, rerun.invoiced, rerun.charged, rerun.paid) == (0, 0, 3, 3)
    assert await charged_cents(engine) == [100, 100, 100]
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
    assert await charged_cents(engine) == []
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
    await owe(engine, payer, 120_000_000)  # the default threshold is 100.00
    await owe(engine, failing, 150_000_000)
    await owe(engine, below, 99_999_999)
    clock.now = START + timedelta(days=10)
    early = await bill(engine, catalog, processor, clock.now)
    assert (early.closed, early.early, early.invoiced, early.paid, early.failed) == (0, 2, 2, 1, 1)
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=payer.user.customer)).total_due_micros == 0
    assert await charged_cents(engine) == [12000]
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


class RefusesSome(EmbeddedProcessor):
    """The embedded processor, refusing to make the customers at `refuse` (as Stripe refuses
    an email it finds invalid) and losing the answer for those at `lose`; with
    `lose_charges`, a batch of charges is made and its answer lost on its way back."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        super().__init__(engine, lambda: clock.now)
        self.refuse: set[str] = set()
        self.lose: set[str] = set()
        self.lose_charges = False

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeResult]:
        made = await super().charge_many(requests)
        if self.lose_charges:
            raise ProcessorUnavailable("connection reset")
        return made

    async def create_customers(self, requests: Sequence[CustomerRequest]) -> list[CustomerResult]:
        kept = [r for r in requests if r.email not in self.refuse | self.lose]
        made = iter(await super().create_customers(kept))
        return [
            ProcessorError("email_invalid", "Invalid email address")
            if r.email in self.refuse
            else ProcessorUnavailable("lost")
            if r.email in self.lose
            else next(made)
            for r in requests
        ]


async def _attempts(engine: AsyncEngine, invoice_id: object) -> list[Attempt]:
    async with engine.connect() as conn:
        return await list_attempts(conn, invoice_id=str(invoice_id))


async def test_a_customer_the_processor_refuses_fails_alone_and_is_dunned_as_a_declined_card(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    processor = RefusesSome(engine, clock)
    payer, refused, lost = [await world.user(f"{n}@example.com") for n in ("payer", "bad", "lost")]
    for person in (payer, refused, lost):
        await owe(engine, person, 2_000_000)
    await add_card(engine, processor, payer.user.customer, START)
    processor.refuse, processor.lose = {"bad@example.com"}, {"lost@example.com"}

    clock.now = ENDED
    first = await bill(engine, catalog, processor, ENDED)
    # The run goes on past both: the payer is charged; without a customer at the processor
    # the refused one's attempt fails uncharged, and the lost one is left untried.
    assert (first.invoiced, first.charged, first.paid, first.failed, first.deferred) == (
        3,
        3,
        1,
        1,
        1,
    )
    by_customer = {i["customer_id"]: i for i in await _invoices(engine)}
    assert [by_customer[p.id]["status"] for p in (payer, refused, lost)] == ["paid", "open", "open"]
    assert [by_customer[p.id]["attempt_count"] for p in (payer, refused, lost)] == [1, 1, 0]
    [attempt] = await _attempts(engine, by_customer[refused.id]["id"])
    assert (attempt.status, attempt.failure_code, attempt.charge_id) == (
        "failed",
        "email_invalid",
        None,
    )
    assert attempt.failure_message == "Invalid email address"
    assert await _attempts(engine, by_customer[lost.id]["id"]) == []
    assert await charged_cents(engine) == [200]

    # The next run tries the lost one again; the refused one waits for its retry day.
    processor.lose = set()
    again = await bill(engine, catalog, processor, ENDED + timedelta(hours=2))
    assert (again.charged, again.paid, again.retried, again.deferred) == (1, 0, 0, 0)
    # Its customer is made now, but it has no card: a failed charge, dunned from today.
    [lost_try] = await _attempts(engine, by_customer[lost.id]["id"])
    assert (lost_try.status, lost_try.failure_code) == ("failed", "no_payment_method")

    # The customer fixed their email: on the first retry day the customer is made and paid.
    processor.refuse = set()
    await add_card(engine, processor, refused.user.customer, ENDED + timedelta(days=1))
    clock.now = ENDED + timedelta(days=1, hours=1)
    retry = await bill(engine, catalog, processor, clock.now)
    assert (retry.retried, retry.deferred) == (1, 0)
    by_customer = {i["customer_id"]: i for i in await _invoices(engine)}
    assert by_customer[refused.id]["status"] == "paid"
    assert [a.status for a in await _attempts(engine, by_customer[refused.id]["id"])] == [
        "failed",
        "succeeded",
    ]
    assert await charged_cents(engine) == [200, 200]


@pytest.mark.parametrize(
    ("column", "value"), [("currency", "eur"), ("amount_cents", 199), ("customer_id", "another")]
)
async def test_a_run_never_settles_an_invoice_with_a_charge_that_is_not_its_attempts(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, column: str, value: str
) -> None:
    """A run's reconcile step asks the processor for the charge under a pending attempt's
    key: one in another currency, of another amount or of another customer (the processor's
    records, not what zoopay asked for) pays nothing. The attempt fails as a retried charge
    would, the usage stays owed, and dunning charges the invoice anew under a new key."""
    processor = RefusesSome(engine, clock)
    payer = await world.user()
    await owe(engine, payer, 2_000_000)
    await add_card(engine, processor, payer.user.customer, START)
    processor.lose_charges = True
    clock.now = ENDED
    first = await bill(engine, catalog, processor, ENDED)
    assert (first.invoiced, first.charged, first.paid) == (1, 1, 0)
    [invoice] = await _invoices(engine)
    [attempt] = await _attempts(engine, invoice["id"])
    assert attempt.status == "pending" and await charged_cents(engine) == [200]
    if value == "another":
        other = await world.user()
        value = await processor_customer(engine, processor, other.user.customer, START)
    async with transaction(engine) as conn:  # the processor's records, not what it was asked
        await conn.execute(
            update(processor_charges)
            .where(processor_charges.c.idempotency_key == attempt.idempotency_key)
            .values({column: value})
        )
    processor.lose_charges = False

    again = await bill(engine, catalog, processor, ENDED + timedelta(hours=2))
    assert (again.reconciled, again.paid) == (1, 0)
    [invoice] = await _invoices(engine)
    [attempt] = await _attempts(engine, invoice["id"])
    assert (invoice["status"], invoice["amount_paid_micros"], invoice["charge_id"]) == (
        "open",
        0,
        None,
    )
    assert (attempt.status, attempt.failure_code, attempt.charge_id) == (
        "failed",
        "idempotency_key_in_use",
        None,
    )
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=payer.user.customer)).total_due_micros == (
            2_000_000
        )
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 0

    # The first retry day: a new attempt, under its own key, is charged and pays the invoice.
    clock.now = ENDED + timedelta(days=1, hours=3)
    retry = await bill(engine, catalog, processor, clock.now)
    assert (retry.retried, retry.paid) == (1, 1)
    [invoice] = await _invoices(engine)
    assert (invoice["status"], invoice["amount_paid_micros"]) == ("paid", 2_000_000)
    assert [a.status for a in await _attempts(engine, invoice["id"])] == ["failed", "succeeded"]
    async with engine.connect() as conn:
        assert (await get_balance(conn, customer=payer.user.customer)).total_due_micros == 0
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 2_000_000


async def test_a_customer_refused_on_every_retry_ends_uncollectible_and_delinquent(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    client: httpx.AsyncClient,
) -> None:
    processor = RefusesSome(engine, clock)
    refused = await world.user("bad@example.com")
    await owe(engine, refused, 1_000_000)
    processor.refuse = {"bad@example.com"}
    for day in (0, 1, 3, 5, 7):
        clock.now = ENDED + timedelta(days=day, hours=1)
        run = await bill(engine, catalog, processor, clock.now)
    assert run.uncollectible == 1
    [invoice] = await _invoices(engine)
    assert (invoice["status"], invoice["attempt_count"]) == ("uncollectible", 5)
    codes = {a.failure_code for a in await _attempts(engine, invoice["id"])}
    assert codes == {"email_invalid"}
    async with engine.connect() as conn:
        found = await find_payment_customer(conn, customer=refused.user.customer)
    assert found is not None and found.delinquent and found.processor == NO_PROCESSOR
    assert await charged_cents(engine) == []
    # Delinquent, so its calls are refused as any customer's who does not pay.
    service = await world.user(staff=True)
    body = {"user_id": refused.id, "endpoint": "/file/conversion"}
    answer = await client.post("/api-calls/authorize", headers=service.headers, json=body)
    assert answer.status_code == 402 and answer.json()["error_code"] == "payment_required"

    # That row names no processor customer: the customer has no cards yet.
    async with engine.connect() as conn:
        assert await processor_customer_id(conn, customer=refused.user.customer) is None
    cards = await client.get("/user/payment/methods", headers=refused.headers)
    assert cards.status_code == 200 and cards.json()["items"] == []

    # Once the processor takes them, the customer is made in that row and pays what is owed.
    processor.refuse = set()
    await add_card(engine, processor, refused.user.customer, clock.now)
    async with engine.connect() as conn:
        found = await find_payment_customer(conn, customer=refused.user.customer)
    assert found is not None and found.processor == processor.name and found.delinquent
    path = f"/user/payment/invoices/{invoice['id']}/pay"
    paid = await client.post(path, headers=refused.headers)
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    assert await charged_cents(engine) == [100]
    async with engine.connect() as conn:
        found = await find_payment_customer(conn, customer=refused.user.customer)
    assert found is not None and not found.delinquent
    answer = await client.post("/api-calls/authorize", headers=service.headers, json=body)
    assert answer.status_code == 200
