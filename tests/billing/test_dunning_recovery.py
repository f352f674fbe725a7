"""The delinquent customer's way out: paying an uncollectible invoice reverses its write-off,
settles it like any paid invoice and, once none is left, ends the delinquency; and the plan a
delinquent customer holds at the period close."""

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World, app_client
from tests.support.billing import (
    ENDED,
    TERMS,
    add_card,
    bill,
    books_are_clean,
    charged_cents,
    embedded,
    owe,
    staff_plan,
)
from tests.support.processor import issue
from zoopay.app import create_app
from zoopay.billing.run import BillingTerms, RunSummary, run_billing
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import transaction
from zoopay.db.tables import invoices, subscriptions
from zoopay.errors import ServiceUnavailable
from zoopay.invoicing.service import (
    apply_charge,
    attempt_key,
    charge_invoice,
    credits_line,
    mark_uncollectible,
    plan_fee_line,
    reconcile_pending_charges,
    void_invoice,
)
from zoopay.journal.service import Account, AccountKind, PostingKind, account_balance
from zoopay.journal.service import invoice_journal as journal_of
from zoopay.ledger.service import Customer, get_balance
from zoopay.payments.service import (
    ensure_processor_customer,
    find_payment_customer,
    set_delinquent,
)
from zoopay.processors.base import Charge, ChargeRequest, ProcessorUnavailable
from zoopay.processors.embedded import EmbeddedProcessor
from zoopay.subscriptions.service import refresh_customer

# No retries: the close's failed charge is given up on in the same run.
NO_RETRIES = replace(TERMS, dunning_days=())
SECOND_CLOSE = START + timedelta(days=63)  # 2026-03-15 has passed: the second period ended


async def _pro(
    engine: AsyncEngine, catalog: Catalog, world: World, card: str, *, annually: bool = False
) -> Person:
    person = await world.user()
    customer = person.user.customer
    await staff_plan(engine, catalog, customer, TierName.PRO, START, pay_annually=annually)
    await add_card(engine, embedded(engine, Clock(START)), person.user.customer, START, card)
    return person


async def _delinquent_pro(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    *,
    usage: int = 0,
    annually: bool = False,
) -> tuple[Person, str]:
    """A Pro customer whose close invoice (next month's 49.00 unless `annually`, and `usage`)
    dunning gave up on."""
    card = "pm_card_chargeCustomerFail"
    person = await _pro(engine, catalog, world, card, annually=annually)
    if usage:
        await owe(engine, person, usage)
    clock.now = ENDED
    run = await bill(engine, catalog, embedded(engine, clock), ENDED, NO_RETRIES)
    assert (run.invoiced, run.failed, run.uncollectible) == (1, 1, 1)
    invoice = await _invoice_of(engine, person)
    assert invoice["status"] == "uncollectible"
    assert await _delinquent(engine, person)
    return person, str(invoice["id"])


async def _invoice_of(engine: AsyncEngine, person: Person) -> dict[str, Any]:
    async with engine.connect() as conn:
        query = select(invoices).where(invoices.c.customer_id == person.id)
        [row] = (await conn.execute(query)).mappings().all()
        return dict(row)


async def _delinquent(engine: AsyncEngine, customer: Person | Customer) -> bool:
    who = customer.user.customer if isinstance(customer, Person) else customer
    async with engine.connect() as conn:
        found = await find_payment_customer(conn, customer=who)
    assert found is not None
    return found.delinquent


async def _authorize(client: httpx.AsyncClient, service: Person, person: Person) -> int:
    body = {"user_id": person.id, "endpoint": "/file/conversion"}
    answer = await client.post("/api-calls/authorize", headers=service.headers, json=body)
    return answer.status_code


async def _tier(engine: AsyncEngine, person: Person) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        query = select(subscriptions.c.tier, subscriptions.c.pending_tier).where(
            subscriptions.c.customer_id == person.id
        )
        tier, pending = (await conn.execute(query)).one()
        return tier, pending


async def test_paying_an_uncollectible_invoice_reverses_the_write_off_and_ends_delinquency(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, client: httpx.AsyncClient
) -> None:
    pro, invoice_id = await _delinquent_pro(engine, catalog, world, clock, usage=4_250_000)
    service = await world.user(staff=True)
    assert await _authorize(client, service, pro) == 402
    pay = f"/user/payment/invoices/{invoice_id}/pay"
    listed = await client.get(pay.removesuffix("/pay"), headers=pro.headers)
    assert listed.json()["can_retry_payment"] is True

    clock.now = ENDED + timedelta(days=2)
    failed = await client.post(pay, headers=pro.headers)
    assert failed.status_code == 402, failed.text
    assert "stays uncollectible" in failed.json()["message"]
    invoice = await _invoice_of(engine, pro)
    assert (invoice["status"], invoice["attempt_count"]) == ("uncollectible", 2)
    assert await _delinquent(engine, pro) and await _authorize(client, service, pro) == 402

    await add_card(engine, embedded(engine, clock), pro.user.customer, clock.now)  # the default
    paid = await client.post(pay, headers=pro.headers)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert (body["status"], body["total"], body["amount_paid"]) == ("paid", "53.25", "53.25")
    assert (body["attempt_count"], body["can_retry_payment"]) == (3, False)
    assert await charged_cents(engine) == [5325]
    async with engine.connect() as conn:
        lines = await journal_of(conn, invoice_id)
        postings = [(line.kind, line.account_id, line.amount_micros) for line in lines]
        receivable = Account(AccountKind.RECEIVABLE, pro.id)
        assert await account_balance(conn, receivable) == 0
        assert await account_balance(conn, Account(AccountKind.BAD_DEBT)) == 0
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 53_250_000
        assert (await get_balance(conn, customer=pro.user.customer)).total_due_micros == 0
    assert [kind for kind, _, _ in postings] == [
        PostingKind.INVOICE_ISSUED,
        PostingKind.INVOICE_ISSUED,
        PostingKind.WRITE_OFF,
        PostingKind.WRITE_OFF,
        PostingKind.WRITE_OFF_REVERSED,
        PostingKind.WRITE_OFF_REVERSED,
        PostingKind.CHARGE,
        PostingKind.CHARGE,
    ]
    assert (PostingKind.WRITE_OFF_REVERSED, "bad_debt", -53_250_000) in postings
    assert (PostingKind.WRITE_OFF_REVERSED, f"receivable:{pro.id}", 53_250_000) in postings
    assert not await _delinquent(engine, pro)
    assert await _authorize(client, service, pro) == 200
    await books_are_clean(engine)

    again = await client.post(pay, headers=pro.headers)
    assert again.status_code == 200 and again.json()["status"] == "paid"
    assert await charged_cents(engine) == [5325]  # paid once


async def test_a_void_invoice_is_not_paid(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, client: httpx.AsyncClient
) -> None:
    person = await _pro(engine, catalog, world, "pm_card_visa")
    invoice = await issue(
        engine, clock, person.user.customer, [credits_line(amount_micros=10_000_000)]
    )
    async with transaction(engine) as conn:
        await void_invoice(conn, invoice_id=invoice.id, now=START)
    refused = await client.post(f"/user/payment/invoices/{invoice.id}/pay", headers=person.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error_code"] == "conflict" and "void" in refused.json()["message"]
    voided = await _invoice_of(engine, person)
    assert (voided["status"], voided["attempt_count"]) == ("void", 0)
    assert await charged_cents(engine) == []


async def test_a_customer_stays_delinquent_until_every_uncollectible_invoice_is_paid(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    person = await _pro(engine, catalog, world, "pm_card_visa")
    customer = person.user.customer
    processor = embedded(engine, clock)
    processor_id = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=START
    )
    lines = [
        [credits_line(amount_micros=20_000_000)],
        [plan_fee_line(tier_name="Pro", period="Feb", amount_micros=49_000_000, reference="f")],
    ]
    written_off = [(await issue(engine, clock, customer, each)).id for each in lines]
    async with transaction(engine) as conn:
        for invoice_id in written_off:
            await mark_uncollectible(conn, invoice_id=invoice_id, now=START)
        await set_delinquent(conn, customer=customer, delinquent=True, now=START)
    async with engine.connect() as conn:
        stable_before = (await get_balance(conn, customer=customer)).stable_micros
    delinquent_after = []
    for invoice_id in written_off:
        outcome = await charge_invoice(
            engine, processor, invoice_id=invoice_id, processor_customer_id=processor_id, now=START
        )
        assert outcome.invoice.paid
        delinquent_after.append(await _delinquent(engine, person))
    assert delinquent_after == [True, False]
    async with engine.connect() as conn:
        # The written-off credits were billed again by the reversal, then delivered when paid.
        stable = (await get_balance(conn, customer=customer)).stable_micros
        assert stable == stable_before + 20_000_000
        assert await account_balance(conn, Account(AccountKind.CREDITS_BILLED, person.id)) == 0
        sold = Account(AccountKind.CREDITS_SOLD, person.id)
        assert await account_balance(conn, sold) == -20_000_000
        assert await account_balance(conn, Account(AccountKind.BAD_DEBT)) == 0
    assert await charged_cents(engine) == [2000, 4900]
    await books_are_clean(engine)


async def test_two_payments_of_an_uncollectible_invoice_at_once_charge_it_once(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, client: httpx.AsyncClient
) -> None:
    pro, invoice_id = await _delinquent_pro(engine, catalog, world, clock)
    await add_card(engine, embedded(engine, clock), pro.user.customer, clock.now)
    pay = f"/user/payment/invoices/{invoice_id}/pay"
    answers = await asyncio.gather(*(client.post(pay, headers=pro.headers) for _ in range(4)))
    statuses = sorted(answer.status_code for answer in answers)
    assert 200 in statuses and set(statuses) <= {200, 409}, [a.text for a in answers]
    assert await charged_cents(engine) == [4900]
    assert (await _invoice_of(engine, pro))["status"] == "paid"
    assert not await _delinquent(engine, pro)
    await books_are_clean(engine)


class RunsBillingMidCharge(EmbeddedProcessor):
    """The embedded processor, with a `billing run` done while a charge is on its way to it:
    the customer's payment is pending when the run retries and gives up on invoices."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, catalog: Catalog, terms: BillingTerms
    ) -> None:
        super().__init__(engine, lambda: clock.now)
        self.engine, self.clock, self.catalog, self.terms = engine, clock, catalog, terms
        self.runs: list[RunSummary] = []

    async def charge(self, request: ChargeRequest) -> Charge:
        plain = EmbeddedProcessor(self.engine, lambda: self.clock.now)
        self.runs.append(
            await run_billing(self.engine, self.catalog, plain, self.terms, at=self.clock.now)
        )
        return await super().charge(request)


@pytest.mark.parametrize(
    ("schedule", "day"),
    [
        # The customer's attempt counts as the last retry: the run would give up on the invoice.
        ((1,), 1),
        # The run's retry (the second, on day 3) is due while the customer's attempt is pending.
        ((1, 3), 3),
    ],
)
async def test_a_billing_run_while_the_customer_pays_neither_charges_again_nor_gives_up(
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    app_settings: Settings,
    schedule: tuple[int, ...],
    day: int,
) -> None:
    pro = await _pro(engine, catalog, world, "pm_card_chargeCustomerFail")
    clock.now = ENDED
    terms = replace(TERMS, dunning_days=schedule)
    first = await bill(engine, catalog, embedded(engine, clock), ENDED, terms)
    assert (first.failed, first.uncollectible) == (1, 0)
    invoice_id = str((await _invoice_of(engine, pro))["id"])
    clock.now = ENDED + timedelta(days=day)
    await add_card(engine, embedded(engine, clock), pro.user.customer, clock.now)

    app = create_app(app_settings, engine=engine, catalog=catalog)
    processor = RunsBillingMidCharge(engine, clock, catalog, terms)
    async with app_client(app, clock) as client:
        app.state.processor = processor
        paid = await client.post(f"/user/payment/invoices/{invoice_id}/pay", headers=pro.headers)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    [run] = processor.runs
    # The run met the customer's attempt pending: it neither retried nor wrote the invoice off.
    assert (run.paid, run.failed, run.uncollectible) == (0, 0, 0)
    assert await charged_cents(engine) == [4900]
    assert not await _delinquent(engine, pro)
    later = await bill(
        engine, catalog, embedded(engine, clock), clock.now + timedelta(days=9), terms
    )
    assert (later.retried, later.uncollectible) == (0, 0)
    await books_are_clean(engine)


async def test_a_delinquent_customer_falls_back_to_free_at_the_period_end(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    pro, _ = await _delinquent_pro(engine, catalog, world, clock)
    clock.now = SECOND_CLOSE
    run = await bill(engine, catalog, embedded(engine, clock), SECOND_CLOSE, NO_RETRIES)
    # No fee for the period that begins, no usage: nothing to invoice.
    assert (run.closed, run.nothing_due, run.invoiced) == (1, 1, 0)
    assert await _tier(engine, pro) == ("free", None)
    assert await charged_cents(engine) == []
    async with engine.connect() as conn:
        balance = await get_balance(conn, customer=pro.user.customer)
    assert balance.monthly_micros == catalog.plan(TierName.FREE).monthly_grant_micros  # type: ignore[union-attr]


async def test_a_delinquent_customer_read_after_the_period_end_falls_back_to_free_credits(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    """A touch between the period end and the run (a balance read, a reported call) started
    the new period at Pro's grant; the close then put the customer on free and left them the
    100.00 of Pro's grant for a period on free, which they never paid for."""
    pro, _ = await _delinquent_pro(engine, catalog, world, clock)
    clock.now = SECOND_CLOSE
    async with transaction(engine) as conn:
        await refresh_customer(conn, catalog=catalog, customer=pro.user.customer, now=clock.now)
    run = await bill(engine, catalog, embedded(engine, clock), SECOND_CLOSE, NO_RETRIES)
    assert (run.closed, run.nothing_due, run.invoiced) == (1, 1, 0)
    assert await _tier(engine, pro) == ("free", None)
    async with engine.connect() as conn:
        balance = await get_balance(conn, customer=pro.user.customer)
    assert balance.monthly_micros == catalog.plan(TierName.FREE).monthly_grant_micros  # type: ignore[union-attr]
    await books_are_clean(engine)


async def test_a_customer_who_paid_before_the_period_end_keeps_the_plan(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, client: httpx.AsyncClient
) -> None:
    pro, invoice_id = await _delinquent_pro(engine, catalog, world, clock)
    clock.now = ENDED + timedelta(days=20)  # mid-period
    await add_card(engine, embedded(engine, clock), pro.user.customer, clock.now)
    paid = await client.post(f"/user/payment/invoices/{invoice_id}/pay", headers=pro.headers)
    assert paid.status_code == 200, paid.text
    clock.now = SECOND_CLOSE
    run = await bill(engine, catalog, embedded(engine, clock), SECOND_CLOSE, NO_RETRIES)
    assert (run.closed, run.invoiced, run.paid) == (1, 1, 1)
    assert await _tier(engine, pro) == ("pro", None)
    assert await charged_cents(engine) == [4900, 4900]


async def test_a_delinquent_customer_billed_annually_keeps_the_plan_until_the_year_ends(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    # The year was paid for (comped here); the usage of the first month was not.
    pro, _ = await _delinquent_pro(engine, catalog, world, clock, usage=4_250_000, annually=True)
    assert (await _invoice_of(engine, pro))["total_micros"] == 4_250_000  # no fee mid-year
    clock.now = SECOND_CLOSE
    run = await bill(engine, catalog, embedded(engine, clock), SECOND_CLOSE, NO_RETRIES)
    assert (run.closed, run.nothing_due) == (1, 1)
    assert await _tier(engine, pro) == ("pro", None)


class NeverAnswers(EmbeddedProcessor):
    """A processor whose charges never arrive: the attempt stays pending, then is abandoned."""

    async def charge(self, request: ChargeRequest) -> Charge:
        raise ProcessorUnavailable


async def test_a_charge_that_arrives_after_the_write_off_still_pays_the_invoice(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    pro, invoice_id = await _delinquent_pro(engine, catalog, world, clock)
    processor = embedded(engine, clock)
    await add_card(engine, processor, pro.user.customer, clock.now)
    processor_id = await ensure_processor_customer(
        engine, processor=processor, customer=pro.user.customer, now=clock.now
    )
    with pytest.raises(ServiceUnavailable):
        await charge_invoice(
            engine,
            NeverAnswers(engine, lambda: clock.now),
            invoice_id=invoice_id,
            processor_customer_id=processor_id,
            now=clock.now,
        )
    clock.now += timedelta(minutes=11)
    found = await reconcile_pending_charges(engine, processor, now=clock.now)
    [attempt] = found.abandoned
    # Yet the processor did take it (a late delivery, a webhook): money taken pays the invoice.
    charge = await processor.charge(
        ChargeRequest(
            processor_id,
            amount_cents=4900,
            currency="usd",
            idempotency_key=attempt_key(invoice_id, 2),
            description="late",
        )
    )
    async with transaction(engine) as conn:
        await apply_charge(conn, attempt_id=attempt, charge=charge, now=clock.now)
    invoice = await _invoice_of(engine, pro)
    assert (invoice["status"], invoice["charge_id"]) == ("paid", charge.id)
    assert not await _delinquent(engine, pro)
    await books_are_clean(engine)
