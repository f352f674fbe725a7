"""Charges that need the customer (3-D Secure, `requires_action`) on the embedded processor: one
the customer completes later pays its invoice exactly once, whatever is tried meanwhile.

The customer's bank answers through `EmbeddedProcessor.authenticate_charge` (what Stripe.js
shows them); zoopay learns of it when it asks: before the invoice's next attempt, and in the
reconcile of `zoopay billing run`. The same rules on Stripe, with its webhook:
tests/processors/test_stripe_requires_action.py.
"""

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.billing import books_are_clean as verified
from tests.support.processor import (
    AUTHENTICATES,
    DOLLARS_25,
    VISA,
    Waiting,
    charge_count,
    invoice_state,
    open_credits_invoice,
    pay_again,
    processor_customer,
    refunded_cents,
    stable_micros,
    succeeded_cents,
)
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import processor_charges
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    apply_charge,
    attempt_key,
    charge_invoice,
    list_attempts,
    mark_uncollectible,
    reconcile_pending_charges,
    refund_stray_charges,
    void_invoice,
)
from zoopay.journal.service import Account, AccountKind, account_balance
from zoopay.ledger.service import Customer
from zoopay.processors.base import ChargeRequest, ChargeStatus
from zoopay.processors.embedded import EmbeddedProcessor


@pytest.fixture
def processor(engine: AsyncEngine, clock: Clock) -> EmbeddedProcessor:
    return EmbeddedProcessor(engine, lambda: clock.now)


async def waiting_invoice(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> Waiting:
    person = await world.user()
    customer = person.user.customer
    cus = await processor_customer(engine, processor, customer, clock.now, AUTHENTICATES)
    invoice_id = await open_credits_invoice(engine, clock.now, customer)
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice_id, processor_customer_id=cus, now=clock.now
    )
    assert outcome.attempt is not None
    assert outcome.attempt.status == AttemptStatus.REQUIRES_ACTION
    assert outcome.invoice.status == InvoiceStatus.OPEN
    assert outcome.attempt.charge_id is not None
    assert await succeeded_cents(engine) == 0
    return Waiting(customer, cus, invoice_id, outcome.attempt.charge_id)


def charge_of(waiting: Waiting, key: str) -> ChargeRequest:
    """What an attempt of the waiting invoice asked the processor for (25.00 USD), by its key."""
    return ChargeRequest(waiting.processor_customer_id, 2500, "usd", key, "")


async def void(engine: AsyncEngine, clock: Clock, invoice_id: str) -> None:
    async with transaction(engine) as conn:
        await void_invoice(conn, invoice_id=invoice_id, now=clock.now)


async def switch_to_visa(processor: EmbeddedProcessor, cus: str) -> None:
    visa = await processor.attach_test_card(cus, VISA)
    await processor.set_default_payment_method(cus, visa.id)


async def books_are_clean(engine: AsyncEngine, customer: Customer) -> None:
    """Verified, and nothing owed back to the customer any more."""
    await verified(engine)
    async with reading(engine) as conn:
        owed = await account_balance(conn, Account(AccountKind.REFUND_DUE, customer.id))
    assert owed == 0


async def test_a_charge_authenticated_later_pays_once_and_a_retry_charges_nothing(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """The double charge of main: the customer authenticates the first charge, then pays again
    (with a card that needs nothing): the first charge is found and pays the invoice; nothing
    is charged a second time."""
    w = await waiting_invoice(engine, world, clock, processor)
    authenticated = await processor.authenticate_charge(w.charge_id)
    assert authenticated.status == ChargeStatus.SUCCEEDED
    await switch_to_visa(processor, w.processor_customer_id)
    retried = await pay_again(engine, processor, clock.now, w)
    assert retried.invoice.paid and retried.attempt is None
    assert (retried.invoice.charge_id, retried.invoice.attempt_count) == (w.charge_id, 1)
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.PAID, ["succeeded"])
    assert (await succeeded_cents(engine), await charge_count(engine)) == (2500, 1)
    assert await stable_micros(engine, w.customer) == DOLLARS_25
    # And again: paid, nothing more.
    again = await pay_again(engine, processor, clock.now, w)
    assert again.attempt is None and await charge_count(engine) == 1
    assert await stable_micros(engine, w.customer) == DOLLARS_25
    await books_are_clean(engine, w.customer)


async def test_billing_runs_reconcile_learns_of_the_authentication(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    w = await waiting_invoice(engine, world, clock, processor)
    waiting = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert (waiting.applied, len(waiting.still_pending)) == ([], 1)  # not authenticated yet

    await processor.authenticate_charge(w.charge_id)
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.applied) == 1 and report.refunded == []
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.PAID, ["succeeded"])
    again = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert (again.applied, again.still_pending) == ([], [])
    assert (await succeeded_cents(engine), await stable_micros(engine, w.customer)) == (
        2500,
        DOLLARS_25,
    )
    await books_are_clean(engine, w.customer)


async def test_a_new_attempt_cancels_the_charge_still_waiting_for_the_customer(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    w = await waiting_invoice(engine, world, clock, processor)
    await switch_to_visa(processor, w.processor_customer_id)
    retried = await pay_again(engine, processor, clock.now, w)
    assert retried.invoice.paid and retried.invoice.attempt_count == 2
    assert retried.invoice.charge_id != w.charge_id
    assert await invoice_state(engine, w.invoice_id) == (
        InvoiceStatus.PAID,
        ["canceled", "succeeded"],
    )
    # The customer authenticates the first one too late: it was canceled, nothing is taken.
    late = await processor.authenticate_charge(w.charge_id)
    assert (late.status, late.failure_code) == (ChargeStatus.CANCELED, "canceled")
    assert await processor.find_charge(charge_of(w, late.idempotency_key)) == late
    assert (await succeeded_cents(engine), await charge_count(engine)) == (2500, 2)
    assert await stable_micros(engine, w.customer) == DOLLARS_25
    await books_are_clean(engine, w.customer)


async def test_a_success_for_an_invoice_voided_meanwhile_is_refunded_once(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """The invoice was voided while its charge waited for the customer, who then completed
    it: the money goes back in full, through the processor, once; no credits are delivered."""
    w = await waiting_invoice(engine, world, clock, processor)
    await void(engine, clock, w.invoice_id)
    await processor.authenticate_charge(w.charge_id)

    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.applied) == 1 and len(report.refunded) == 1
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.VOID, ["refunded"])
    assert (await succeeded_cents(engine), await refunded_cents(engine)) == (2500, 2500)
    again = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert (again.applied, again.refunded) == ([], [])
    assert await refunded_cents(engine) == 2500
    assert await stable_micros(engine, w.customer) == 0
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 0
    await books_are_clean(engine, w.customer)


async def test_a_closed_invoices_waiting_charge_is_canceled_by_reconcile(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    w = await waiting_invoice(engine, world, clock, processor)
    await void(engine, clock, w.invoice_id)
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.applied) == 1 and report.refunded == []
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.VOID, ["canceled"])
    late = await processor.authenticate_charge(w.charge_id)
    assert late.status == ChargeStatus.CANCELED
    assert await succeeded_cents(engine) == 0
    await books_are_clean(engine, w.customer)


@pytest.mark.parametrize(
    ("column", "value"), [("currency", "eur"), ("amount_cents", 2600), ("customer_id", "another")]
)
async def test_a_waiting_charge_that_is_not_the_attempts_is_never_held_nor_refunded(
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    processor: EmbeddedProcessor,
    column: str,
    value: str,
) -> None:
    """Reconcile cancels the waiting charge of a voided invoice; a success it answers instead
    is money held and refunded (`refund_due`). A charge that is no longer what the attempt
    asked for (another currency, amount or customer, in the processor's records) is none of
    this invoice's money: nothing is posted as dollars, nothing refunded, nothing canceled;
    the attempt is left waiting for the operator."""
    w = await waiting_invoice(engine, world, clock, processor)
    await void(engine, clock, w.invoice_id)
    if value == "another":
        other = await world.user()
        value = await processor_customer(engine, processor, other.user.customer, clock.now)
    async with transaction(engine) as conn:  # the processor's truth, unlike what it was asked
        await conn.execute(
            update(processor_charges)
            .where(processor_charges.c.id == w.charge_id)
            .values({"status": "succeeded", "failure_code": None, column: value})
        )

    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert (report.applied, report.refunded, len(report.still_pending)) == ([], [], 1)
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.VOID, ["requires_action"])
    assert await refunded_cents(engine) == 0
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 0
    assert await stable_micros(engine, w.customer) == 0
    await books_are_clean(engine, w.customer)


async def test_a_success_reported_for_an_attempt_taken_for_canceled_is_refunded(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """Should the processor ever report a success for a charge zoopay took for canceled (a
    cancel that raced the customer's authentication), the money is not ignored: the invoice
    was paid by the new attempt, so this one is refunded in full."""
    w = await waiting_invoice(engine, world, clock, processor)
    await switch_to_visa(processor, w.processor_customer_id)
    assert (await pay_again(engine, processor, clock.now, w)).invoice.paid
    async with transaction(engine) as conn:  # the processor's truth, unlike what it answered
        await conn.execute(
            update(processor_charges)
            .where(processor_charges.c.id == w.charge_id)
            .values(status="succeeded", failure_code=None, failure_message=None)
        )
    succeeded = await processor.find_charge(charge_of(w, attempt_key(w.invoice_id, 1)))
    assert succeeded is not None and succeeded.status == ChargeStatus.SUCCEEDED
    async with reading(engine) as conn:
        [first, _] = await list_attempts(conn, invoice_id=w.invoice_id)
    async with transaction(engine) as conn:
        late = await apply_charge(conn, attempt_id=first.id, charge=succeeded, now=clock.now)
    assert late.status == AttemptStatus.REFUND_DUE
    assert await refund_stray_charges(engine, processor, now=clock.now) == [first.id]
    assert await invoice_state(engine, w.invoice_id) == (
        InvoiceStatus.PAID,
        ["refunded", "succeeded"],
    )
    assert (await succeeded_cents(engine), await refunded_cents(engine)) == (5000, 2500)
    assert await stable_micros(engine, w.customer) == DOLLARS_25
    await books_are_clean(engine, w.customer)


async def test_an_authentication_after_dunning_gave_up_pays_the_uncollectible_invoice(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """Money taken always pays what can still be paid: an uncollectible invoice's waiting
    charge is left to the customer (not canceled), and completing it pays the invoice."""
    w = await waiting_invoice(engine, world, clock, processor)
    async with transaction(engine) as conn:
        await mark_uncollectible(conn, invoice_id=w.invoice_id, now=clock.now)
    still = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert (still.applied, len(still.still_pending)) == ([], 1)
    await processor.authenticate_charge(w.charge_id)
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.applied) == 1 and report.refunded == []
    assert await invoice_state(engine, w.invoice_id) == (InvoiceStatus.PAID, ["succeeded"])
    assert (await succeeded_cents(engine), await refunded_cents(engine)) == (2500, 0)
    assert await stable_micros(engine, w.customer) == DOLLARS_25
    await books_are_clean(engine, w.customer)
