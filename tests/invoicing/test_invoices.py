"""Invoices as services: amounts to the micro-dollar, numbering, charging, settling, refunds, and
the journal verified clean after every flow."""

from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.concurrency import all_finished
from tests.support.processor import (
    AUTHENTICATES,
    DECLINES,
    VISA,
    Unreachable,
    charge_count,
    issue,
    processor_customer,
    refunded_cents,
    stable_micros,
    succeeded_cents,
)
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import (
    invoice_payment_attempts,
    invoice_refunds,
    invoices,
    journal_accounts,
    ledger_entries,
)
from zoopay.errors import BadRequest, Conflict, NotFound, PaymentRequired, ServiceUnavailable
from zoopay.invoicing.service import (
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    LineKind,
    NewLine,
    RefundStatus,
    attempt_key,
    charge_invoice,
    credits_line,
    get_invoice,
    issue_invoice,
    list_attempts,
    mark_uncollectible,
    plan_fee_line,
    reconcile_pending_charges,
    reconcile_pending_refunds,
    refund_invoice,
    usage_line,
    void_invoice,
)
from zoopay.journal.service import Account, AccountKind, account_balance, invoice_journal, verify
from zoopay.ledger.service import Bucket, Customer, Reason, get_balance, lock_balance, post
from zoopay.ledger.service import Posting as BucketPosting
from zoopay.processors.base import ChargeRequest, ProcessorError, ProcessorUnavailable, Refund
from zoopay.processors.embedded import EmbeddedProcessor

DE = {"DE": Decimal("0.19")}


@pytest.fixture
def processor(engine: AsyncEngine, clock: Clock) -> EmbeddedProcessor:
    return EmbeddedProcessor(engine, lambda: clock.now)


async def books_are_clean(engine: AsyncEngine) -> None:
    async with reading(engine) as conn:
        assert await verify(conn) == []


async def staff_refund(
    engine: AsyncEngine,
    processor: EmbeddedProcessor,
    clock: Clock,
    invoice_id: str,
    micros: int,
    key: str,
) -> Invoice:
    """Staff refund `micros` of the invoice under `key`."""
    return await refund_invoice(
        engine,
        processor,
        invoice_id=invoice_id,
        amount_micros=micros,
        idempotency_key=key,
        actor="staff",
        now=clock.now,
    )


async def test_issue_computes_tax_and_rounds_to_cents(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    lines = [
        plan_fee_line(tier_name="Pro", period="January", amount_micros=10_000_000, reference="s1"),
        usage_line(period="January", amount_micros=4_200),
    ]
    invoice = await issue(engine, clock, person.user.customer, lines, country="de", tax_rates=DE)
    # 10.0042 x 0.19 = 1.900798 tax; 11.904998 rounds half-up to 11.90; -0.004998 rounding.
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.number == "ZP-000001"
    assert invoice.country == "DE"
    assert invoice.tax_rate == Decimal("0.19")
    assert invoice.tax_micros == 1_900_798
    assert invoice.total_micros == 11_900_000
    assert invoice.subtotal_micros == 9_999_202
    assert [(line.kind, line.amount_micros) for line in invoice.lines] == [
        (LineKind.PLAN_FEE, 10_000_000),
        (LineKind.USAGE, 4_200),
        (LineKind.ROUNDING, -4_998),
    ]
    assert sum(line.amount_micros for line in invoice.lines) == invoice.subtotal_micros
    assert invoice.amount_remaining_micros == 11_900_000
    async with reading(engine) as conn:
        journal = await invoice_journal(conn, invoice.id)
        receivable = Account(AccountKind.RECEIVABLE, person.id)
        assert await account_balance(conn, receivable) == 11_900_000
        assert await account_balance(conn, Account(AccountKind.REVENUE)) == -10_004_200
        assert await account_balance(conn, Account(AccountKind.TAX_PAYABLE)) == -1_900_798
        assert await account_balance(conn, Account(AccountKind.ROUNDING)) == 4_998
    assert sum(line.amount_micros for line in journal) == 0
    await books_are_clean(engine)


async def test_no_tax_without_a_rate_and_whole_cents_need_no_rounding(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    invoice = await issue(
        engine,
        clock,
        person.user.customer,
        [credits_line(amount_micros=25_000_000)],
        country="FR",
        tax_rates=DE,
    )
    assert (invoice.tax_micros, invoice.total_micros, invoice.subtotal_micros) == (
        0,
        25_000_000,
        25_000_000,
    )
    assert [line.kind for line in invoice.lines] == [LineKind.CREDITS]


async def test_bad_lines_are_refused_and_write_nothing(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    for lines in (
        [],
        [NewLine(LineKind.USAGE, "x", -1)],
        [NewLine(LineKind.ROUNDING, "x", 1)],
        [NewLine(LineKind.USAGE, " ", 1)],
    ):
        with pytest.raises(BadRequest):
            await issue(engine, clock, person.user.customer, lines)
    async with reading(engine) as conn:
        assert (await conn.execute(select(invoices))).first() is None


async def test_a_paid_credit_purchase_grows_the_stable_bucket_by_exactly_its_amount(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    cus = await processor_customer(engine, processor, customer, clock.now)
    before = await stable_micros(engine, customer)
    invoice = await issue(engine, clock, customer, [credits_line(amount_micros=25_000_000)])
    assert await stable_micros(engine, customer) == before  # not before it is paid
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    paid = outcome.raise_unless_paid()
    assert paid.status == InvoiceStatus.PAID
    assert (paid.amount_paid_micros, paid.amount_remaining_micros, paid.attempt_count) == (
        25_000_000,
        0,
        1,
    )
    assert paid.charge_id is not None
    assert await stable_micros(engine, customer) == before + 25_000_000
    assert await succeeded_cents(engine) == 2500
    charge = await processor.find_charge(
        ChargeRequest(cus, 2500, "usd", attempt_key(invoice.id, 1), "")
    )
    assert charge is not None and charge.id == paid.charge_id
    assert await charge_count(engine) == 1
    # Again: paid already, nothing charged, nothing credited.
    again = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert again.attempt is None and again.invoice.paid
    assert await succeeded_cents(engine) == 2500 and await charge_count(engine) == 1
    assert await stable_micros(engine, customer) == before + 25_000_000
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 25_000_000
        assert await account_balance(conn, Account(AccountKind.RECEIVABLE, person.id)) == 0
        assert await account_balance(conn, Account(AccountKind.CREDITS_BILLED, person.id)) == 0
        sold = Account(AccountKind.CREDITS_SOLD, person.id)
        assert await account_balance(conn, sold) == -25_000_000
        entry = (
            (
                await conn.execute(
                    select(ledger_entries).where(ledger_entries.c.reason == "credit_purchase")
                )
            )
            .mappings()
            .one()
        )
        assert (entry["delta_micros"], entry["reference"]) == (25_000_000, invoice.id)
    await books_are_clean(engine)


async def test_a_declined_charge_leaves_the_invoice_open_and_credits_nothing(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    cus = await processor_customer(engine, processor, customer, clock.now, DECLINES)
    invoice = await issue(engine, clock, customer, [credits_line(amount_micros=5_000_000)])
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert outcome.invoice.status == InvoiceStatus.OPEN
    assert outcome.attempt is not None and outcome.attempt.status == AttemptStatus.FAILED
    with pytest.raises(PaymentRequired, match="declined"):
        outcome.raise_unless_paid()
    assert await stable_micros(engine, customer) == 0
    # The retry is a new attempt with its own key, and pays.
    visa = await processor.attach_test_card(cus, VISA)
    await processor.set_default_payment_method(cus, visa.id)
    retried = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert retried.invoice.paid and retried.invoice.attempt_count == 2
    assert retried.attempt is not None and retried.attempt.idempotency_key == attempt_key(
        invoice.id, 2
    )
    assert await stable_micros(engine, customer) == 5_000_000
    assert await succeeded_cents(engine) == 500
    await books_are_clean(engine)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [(None, "no payment method is on file"), (AUTHENTICATES, "authenticate")],
)
async def test_no_method_or_authentication_is_a_402_a_person_can_act_on(
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    processor: EmbeddedProcessor,
    behaviour: str | None,
    message: str,
) -> None:
    person = await world.user()
    cus = await processor_customer(engine, processor, person.user.customer, clock.now, behaviour)
    lines = [credits_line(amount_micros=1_000_000)]
    invoice = await issue(engine, clock, person.user.customer, lines)
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    with pytest.raises(PaymentRequired, match=message):
        outcome.raise_unless_paid()
    assert outcome.invoice.status == InvoiceStatus.OPEN
    assert await stable_micros(engine, person.user.customer) == 0


async def test_a_crash_after_the_answer_is_repaired_by_reconcile_and_never_charges_twice(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    cus = await processor_customer(engine, processor, person.user.customer, clock.now)
    invoice = await issue(
        engine, clock, person.user.customer, [credits_line(amount_micros=7_000_000)]
    )

    def crash(_charge: object) -> None:
        raise SystemExit("killed between the processor's answer and the commit")

    with pytest.raises(SystemExit):
        await charge_invoice(
            engine,
            processor,
            invoice_id=invoice.id,
            processor_customer_id=cus,
            now=clock.now,
            after_answer=crash,
        )
    async with reading(engine) as conn:
        assert (await get_invoice(conn, invoice_id=invoice.id)).status == InvoiceStatus.OPEN
        [attempt] = await list_attempts(conn, invoice_id=invoice.id)
        assert attempt.status == AttemptStatus.PENDING
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert report.applied == [attempt.id]
    again = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert again.applied == [] and again.still_pending == []
    async with reading(engine) as conn:
        paid = await get_invoice(conn, invoice_id=invoice.id)
    assert paid.paid and paid.amount_paid_micros == 7_000_000
    assert await succeeded_cents(engine) == 700 and await charge_count(engine) == 1
    assert await stable_micros(engine, person.user.customer) == 7_000_000
    await books_are_clean(engine)


async def test_a_pending_attempt_is_learned_before_a_new_charge(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """The customer pays again after a crash: the first charge is found, not repeated."""
    person = await world.user()
    cus = await processor_customer(engine, processor, person.user.customer, clock.now)
    invoice = await issue(engine, clock, person.user.customer, [credits_line(amount_micros=10_000)])

    def crash(_charge: object) -> None:
        raise SystemExit

    with pytest.raises(SystemExit):
        await charge_invoice(
            engine,
            processor,
            invoice_id=invoice.id,
            processor_customer_id=cus,
            now=clock.now,
            after_answer=crash,
        )
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert outcome.invoice.paid and outcome.attempt is None
    assert await charge_count(engine) == 1 and outcome.invoice.attempt_count == 1


async def test_an_attempt_the_processor_never_saw_is_abandoned_after_a_while(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    cus = await processor_customer(engine, processor, person.user.customer, clock.now)
    invoice = await issue(engine, clock, person.user.customer, [credits_line(amount_micros=10_000)])
    lost = Unreachable(engine, lambda: clock.now)  # the request never reaches the processor
    with pytest.raises(ServiceUnavailable):
        await charge_invoice(
            engine, lost, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
        )
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.still_pending) == 1  # may still be on its way
    clock.advance(minutes=11)
    report = await reconcile_pending_charges(engine, processor, now=clock.now)
    assert len(report.abandoned) == 1
    async with reading(engine) as conn:
        still = await get_invoice(conn, invoice_id=invoice.id)
        [attempt] = await list_attempts(conn, invoice_id=invoice.id)
    assert still.status == InvoiceStatus.OPEN and attempt.status == AttemptStatus.ABANDONED
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert outcome.invoice.paid and outcome.invoice.attempt_count == 2


async def test_paying_a_usage_line_settles_total_due(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=customer)
        await post(
            conn,
            balance=balance,
            deltas={Bucket.TOTAL_DUE: 3_456_789},
            posting=BucketPosting(Reason.API_CALL, "test"),
            now=clock.now,
        )
    cus = await processor_customer(engine, processor, customer, clock.now)
    invoice = await issue(
        engine, clock, customer, [usage_line(period="Jan", amount_micros=3_456_789)]
    )
    assert invoice.total_micros == 3_460_000  # half-up to cents: +0.003211 rounding
    outcome = await charge_invoice(
        engine,
        processor,
        invoice_id=invoice.id,
        processor_customer_id=cus,
        now=clock.now,
    )
    assert outcome.invoice.paid
    async with reading(engine) as conn:
        assert (await get_balance(conn, customer=customer)).total_due_micros == 0
    await books_are_clean(engine)


async def test_numbers_have_no_gaps_under_concurrency_and_rollbacks(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer

    async def one(index: int) -> None:
        try:
            async with transaction(engine) as conn:
                await issue_invoice(
                    conn,
                    customer=customer,
                    lines=[credits_line(amount_micros=1_000_000)],
                    description=f"#{index}",
                    tax_rates={},
                    prefix="ZP",
                    now=clock.now,
                )
                if index % 3 == 0:
                    raise RuntimeError("rolled back after taking a number")
        except RuntimeError:
            pass

    await all_finished(*(one(index) for index in range(12)))
    async with reading(engine) as conn:
        numbers = sorted(row[0] for row in await conn.execute(select(invoices.c.number)))
    assert numbers == [f"ZP-{n:06d}" for n in range(1, 9)]
    await books_are_clean(engine)


async def test_another_customers_invoice_is_not_found(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    owner, other = await world.user(), await world.user()
    invoice = await issue(engine, clock, owner.user.customer, [credits_line(amount_micros=1)])
    async with reading(engine) as conn:
        with pytest.raises(NotFound):
            await get_invoice(conn, invoice_id=invoice.id, customer=other.user.customer)
        assert (await get_invoice(conn, invoice_id=invoice.id, customer=owner.user.customer)).id


async def paid_credit_invoice(
    engine: AsyncEngine, clock: Clock, customer: Customer, processor: EmbeddedProcessor, micros: int
):  # type: ignore[no-untyped-def]
    cus = await processor_customer(engine, processor, customer, clock.now)
    invoice = await issue(engine, clock, customer, [credits_line(amount_micros=micros)])
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    return outcome.raise_unless_paid()


async def test_refunds_are_bounded_by_what_was_paid_and_happen_once_per_key(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    invoice = await paid_credit_invoice(engine, clock, customer, processor, 20_000_000)

    async def refund(micros: int, key: str) -> Invoice:
        return await staff_refund(engine, processor, clock, invoice.id, micros, key)

    first = await refund(5_000_000, "a")
    assert first.amount_refunded_micros == 5_000_000
    assert first.refund_status == RefundStatus.PARTIALLY_REFUNDED
    assert await stable_micros(engine, customer) == 15_000_000
    again = await refund(5_000_000, "a")  # a retry of the same request
    assert again.amount_refunded_micros == 5_000_000 and await refunded_cents(engine) == 500
    assert await stable_micros(engine, customer) == 15_000_000
    with pytest.raises(Conflict):
        await refund(6_000_000, "a")  # same key, other amount
    with pytest.raises(BadRequest, match=r"15\.00 USD left to refund"):
        await refund(15_010_000, "b")
    with pytest.raises(BadRequest, match="whole cents"):
        await refund(1_000, "c")
    full = await refund(15_000_000, "d")
    assert full.refund_status == RefundStatus.REFUNDED
    assert full.amount_refunded_micros == 20_000_000
    assert await stable_micros(engine, customer) == 0
    assert await refunded_cents(engine) == 2000
    with pytest.raises(BadRequest):
        await refund(10_000, "e")
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 0
        sold = Account(AccountKind.CREDITS_SOLD, person.id)
        assert await account_balance(conn, sold) == 0
    await books_are_clean(engine)


async def test_a_refund_gives_back_the_tax_and_rounding_in_proportion_not_revenue(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """A refund's part beyond credits all came off revenue: the tax it returned stayed owed in
    tax_payable, and a credit purchase (no revenue at all) left revenue negative."""
    fee_payer, buyer = await world.user(), await world.user()
    fees = [
        plan_fee_line(tier_name="Pro", period="January", amount_micros=10_000_000, reference="s"),
        usage_line(period="January", amount_micros=4_200),
    ]
    paid = []
    for person, lines in ((fee_payer, fees), (buyer, [credits_line(amount_micros=10_000_000)])):
        cus = await processor_customer(engine, processor, person.user.customer, clock.now)
        invoice = await issue(
            engine, clock, person.user.customer, lines, country="DE", tax_rates=DE
        )
        outcome = await charge_invoice(
            engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
        )
        paid.append(outcome.raise_unless_paid())
    fee_invoice, credit_invoice = paid
    # 10.0042 + 1.900798 tax - 0.004998 rounding = 11.90; credits 10.00 + 1.90 tax = 11.90.
    assert fee_invoice.total_micros == credit_invoice.total_micros == 11_900_000

    async def refund(invoice_id: str, micros: int, key: str) -> None:
        await staff_refund(engine, processor, clock, invoice_id, micros, key)

    async def accounts() -> dict[AccountKind, int]:
        async with reading(engine) as conn:
            return {
                kind: await account_balance(conn, Account(kind))
                for kind in (AccountKind.REVENUE, AccountKind.TAX_PAYABLE, AccountKind.ROUNDING)
            }

    await refund(fee_invoice.id, 5_000_000, "part")
    # 5.00 of 11.90 returns that share of the tax and the rounding (rounded down), the rest
    # is revenue's.
    assert await accounts() == {
        AccountKind.REVENUE: -10_004_200 + 4_203_446,
        AccountKind.TAX_PAYABLE: -1_900_798 - 1_900_000 + 798_654,
        AccountKind.ROUNDING: 4_998 - 2_100,
    }
    await refund(fee_invoice.id, 6_900_000, "rest")
    await refund(credit_invoice.id, 11_900_000, "all")
    # Everything refunded: nothing earned, no tax owed, no rounding left.
    assert await accounts() == {
        AccountKind.REVENUE: 0,
        AccountKind.TAX_PAYABLE: 0,
        AccountKind.ROUNDING: 0,
    }
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.PROCESSOR_CASH)) == 0
        assert await account_balance(conn, Account(AccountKind.CREDITS_SOLD, buyer.id)) == 0
    assert await stable_micros(engine, buyer.user.customer) == 0
    await books_are_clean(engine)


class RefusesRefunds(EmbeddedProcessor):
    """The embedded processor, refusing every refund (a disputed charge, say)."""

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        raise ProcessorError("charge_disputed", "this charge is disputed")


async def test_a_refund_the_processor_refused_is_not_answered_as_done_when_sent_again(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """Sent again with its key ("send it again to retry safely"), a refused refund answered
    the invoice as if all were well: nothing refunded, and nothing said."""
    person = await world.user()
    customer = person.user.customer
    invoice = await paid_credit_invoice(engine, clock, customer, processor, 10_000_000)

    async def refund(by: EmbeddedProcessor, key: str) -> Invoice:
        return await staff_refund(engine, by, clock, invoice.id, 10_000_000, key)

    with pytest.raises(BadRequest, match="this charge is disputed"):
        await refund(RefusesRefunds(engine, lambda: clock.now), "ticket-7")
    with pytest.raises(BadRequest, match=r"refused.*new idempotency_key"):
        await refund(processor, "ticket-7")
    async with reading(engine) as conn:
        assert (await get_invoice(conn, invoice_id=invoice.id)).amount_refunded_micros == 0
    assert await refunded_cents(engine) == 0
    assert await stable_micros(engine, customer) == 10_000_000
    # A new key refunds.
    done = await refund(processor, "ticket-7b")
    assert done.amount_refunded_micros == 10_000_000 and await refunded_cents(engine) == 1000
    assert await stable_micros(engine, customer) == 0
    await books_are_clean(engine)


class LosesRefunds(EmbeddedProcessor):
    """The embedded processor behind a network that loses every refund request on its way."""

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        raise ProcessorUnavailable("connection reset")


async def test_a_pending_refund_the_processor_refuses_when_asked_again_fails_and_frees_its_amount(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    """A refund left pending (the processor did not answer) and refused when reconciliation
    asked again stayed pending for ever: its 10.00 was kept from what can be refunded, and
    every reconciliation asked again. Now it fails, as a refund refused at once does; one the
    processor still does not answer stays pending and completes when it answers."""
    person = await world.user()
    invoice = await paid_credit_invoice(engine, clock, person.user.customer, processor, 10_000_000)
    lost = LosesRefunds(engine, lambda: clock.now)

    async def refund(by: EmbeddedProcessor, key: str) -> Invoice:
        return await staff_refund(engine, by, clock, invoice.id, 10_000_000, key)

    async def statuses() -> list[str]:
        async with reading(engine) as conn:
            query = select(invoice_refunds.c.status).order_by(invoice_refunds.c.created_at)
            return [str(status) for status in (await conn.execute(query)).scalars()]

    for key in ("ticket-8", "ticket-9"):
        with pytest.raises(ServiceUnavailable):
            await refund(lost, key)
        clock.advance(minutes=1)
        if key == "ticket-8":  # refused when asked again: failed
            refused = RefusesRefunds(engine, lambda: clock.now)
            assert await reconcile_pending_refunds(engine, refused, now=clock.now) == 0
            assert await statuses() == ["failed"]
            with pytest.raises(BadRequest, match=r"refused.*new idempotency_key"):
                await refund(processor, key)
    # Still unanswered: pending, then completed once the processor answers.
    assert await reconcile_pending_refunds(engine, lost, now=clock.now) == 0
    assert await statuses() == ["failed", "pending"]
    assert await reconcile_pending_refunds(engine, processor, now=clock.now) == 1
    assert await statuses() == ["failed", "succeeded"]
    async with reading(engine) as conn:
        assert (await get_invoice(conn, invoice_id=invoice.id)).amount_refunded_micros == 10_000_000
    assert await refunded_cents(engine) == 1000
    assert await stable_micros(engine, person.user.customer) == 0
    await books_are_clean(engine)


async def test_spent_credits_cannot_be_refunded(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    invoice = await paid_credit_invoice(engine, clock, customer, processor, 10_000_000)
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=customer)
        await post(
            conn,
            balance=balance,
            deltas={Bucket.STABLE: -balance.stable_micros - 0 + 4_000_000},
            posting=BucketPosting(Reason.API_CALL, "test"),
            now=clock.now,
        )
    with pytest.raises(Conflict, match="spent"):
        await staff_refund(engine, processor, clock, invoice.id, 5_000_000, "x")
    refunded = await staff_refund(engine, processor, clock, invoice.id, 4_000_000, "y")
    assert refunded.amount_refunded_micros == 4_000_000
    assert await stable_micros(engine, customer) == 0
    await books_are_clean(engine)


async def test_void_and_uncollectible_close_the_receivable(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    customer = person.user.customer
    fee = plan_fee_line(tier_name="Pro", period="Jan", amount_micros=40_000_000, reference="s")
    voided = await issue(engine, clock, customer, [fee])
    lost = await issue(engine, clock, customer, [fee, credits_line(amount_micros=1_000_000)])
    async with transaction(engine) as conn:
        assert (await void_invoice(conn, invoice_id=voided.id, now=clock.now)).status == "void"
        written_off = await mark_uncollectible(conn, invoice_id=lost.id, now=clock.now)
    assert written_off.status == InvoiceStatus.UNCOLLECTIBLE
    assert written_off.amount_remaining_micros == 0
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.RECEIVABLE, person.id)) == 0
        assert await account_balance(conn, Account(AccountKind.BAD_DEBT)) == 40_000_000
        assert await account_balance(conn, Account(AccountKind.REVENUE)) == -40_000_000
    # A void invoice is never charged (an uncollectible one may still be paid: the customer's
    # way out, tests/billing/test_dunning_recovery.py).
    with pytest.raises(Conflict, match="void"):
        await charge_invoice(
            engine,
            processor,
            invoice_id=voided.id,
            processor_customer_id="cus_none",
            now=clock.now,
        )
    await books_are_clean(engine)


async def test_verify_names_what_does_not_add_up(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    await paid_credit_invoice(engine, clock, person.user.customer, processor, 3_000_000)
    await books_are_clean(engine)
    async with transaction(engine) as conn:
        await conn.execute(
            update(journal_accounts)
            .where(journal_accounts.c.id == "processor_cash")
            .values(balance_micros=journal_accounts.c.balance_micros + 1)
        )
    async with reading(engine) as conn:
        problems = await verify(conn)
    assert problems == [
        "journal account processor_cash holds 3000001 micro-dollars, its lines sum to 3000000"
    ]
    async with transaction(engine) as conn:
        await conn.execute(
            update(journal_accounts)
            .where(journal_accounts.c.id == "processor_cash")
            .values(balance_micros=3_000_000)
        )
        await conn.execute(
            update(invoice_payment_attempts).values(status="succeeded")  # harmless
        )
    await books_are_clean(engine)


async def test_paying_again_after_a_lost_request_waits_then_charges_anew(
    engine: AsyncEngine, world: World, clock: Clock, processor: EmbeddedProcessor
) -> None:
    person = await world.user()
    cus = await processor_customer(engine, processor, person.user.customer, clock.now)
    invoice = await issue(
        engine, clock, person.user.customer, [credits_line(amount_micros=3_000_000)]
    )
    lost = Unreachable(engine, lambda: clock.now)
    with pytest.raises(ServiceUnavailable):
        await charge_invoice(
            engine, lost, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
        )
    with pytest.raises(Conflict, match="in progress"):
        await charge_invoice(
            engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
        )
    clock.advance(minutes=11)
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=cus, now=clock.now
    )
    assert outcome.invoice.paid and outcome.invoice.attempt_count == 2
    async with reading(engine) as conn:
        statuses = [a.status for a in await list_attempts(conn, invoice_id=invoice.id)]
    assert statuses == [AttemptStatus.ABANDONED, AttemptStatus.SUCCEEDED]
    assert await succeeded_cents(engine) == 300
    await books_are_clean(engine)


async def test_an_invoice_that_rounds_to_nothing_is_paid_at_once_without_a_charge(
    engine: AsyncEngine, world: World, clock: Clock
) -> None:
    person = await world.user()
    invoice = await issue(
        engine, clock, person.user.customer, [usage_line(period="Jan", amount_micros=4_000)]
    )
    assert invoice.status == InvoiceStatus.PAID and invoice.charge_id is None
    assert (invoice.total_micros, invoice.subtotal_micros) == (0, 0)
    assert [(line.kind, line.amount_micros) for line in invoice.lines] == [
        (LineKind.USAGE, 4_000),
        (LineKind.ROUNDING, -4_000),
    ]
    assert invoice.number == "ZP-000001"
    assert await charge_count(engine) == 0
    async with reading(engine) as conn:
        assert await account_balance(conn, Account(AccountKind.ROUNDING)) == 4_000
    await books_are_clean(engine)
