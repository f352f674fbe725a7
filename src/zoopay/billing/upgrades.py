"""Plan changes that move money: an upgrade is paid at once, a downgrade credits the unused rest.

- Upgrade (the new plan costs more for the rest of the period): an invoice for the difference
  of the rests (billing.proration, per seat) is issued and charged to the default payment
  method before the plan changes. No method, a decline, or a card that needs authentication:
  the invoice is voided, the plan stays, and the answer is a 402 saying what to do.
- Downgrade (costs less): the plan changes at once (as before: the monthly bucket is capped at
  the new grant) and the unused rest of what was paid, less the new plan's rest, becomes a
  billing credit taken off the customer's next invoices: never cash, never API credits.
- Staff changes (PUT /users/{id}/payment/subscriptions) are comped: no charge, no credit.
- A downgrade credits at most what of the plan fees paid (or billed) is unused (`unused_paid`):
  the rest of a plan staff comped, or of seats or a price added since the fee, was never paid
  and is not credited.

Two upgrades at once cannot both charge: the first holds the customer's balance lock while it
issues its invoice, and the second finds that open invoice and answers 409.

A card that needs authentication: the charge waiting for the customer is canceled before the
invoice is voided (if they completed it meanwhile, the upgrade is paid and goes through); a
success that still arrives for the void invoice is refunded (invoicing's `refund_due` rule).
A paid upgrade whose plan change then fails (a concurrent change, a database error) is refunded
in full through the processor, with a key derived from the invoice, and the answer says so.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.billing.close import claim, has_period_to_close
from zoopay.billing.pricing import (
    NegotiatedPrice,
    billed_annually,
    fee_period_bounds,
    fee_period_price,
)
from zoopay.billing.proration import MICROS_PER_CENT, prorated_micros
from zoopay.catalog.schemas import PlanInterval, TierName
from zoopay.catalog.service import Catalog, Plan
from zoopay.db.engine import is_unavailable, reading, transaction
from zoopay.db.tables import (
    billing_closes,
    downgrade_credits,
    enterprise_prices,
    held_credits,
    invoice_lines,
    invoices,
    org_members,
    plan_change_payments,
)
from zoopay.errors import Conflict, PaymentRequired, ServiceUnavailable, ZoopayError
from zoopay.invoicing.fee_credits import add_credit, hold_credit
from zoopay.invoicing.service import (
    Amounts,
    Attempt,
    AttemptStatus,
    ChargeOutcome,
    InvoiceStatus,
    LineKind,
    NewLine,
    charge_invoice,
    invoice_amounts,
    issue_invoice,
    lock_invoice,
    plan_fee_line,
    refund_invoice,
    resolve_awaiting_action,
    void_invoice,
)
from zoopay.ledger.service import Customer, lock_balance
from zoopay.money import format_micros
from zoopay.payments.service import billing_contacts, ensure_processor_customer
from zoopay.processors.base import PaymentProcessor
from zoopay.subscriptions.periods import period_start
from zoopay.subscriptions.service import (
    Subscription,
    change_plan,
    current_plan,
    get_subscription,
    refresh_customer,
    refresh_due,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeTerms:
    tax_rates: dict[str, Decimal]
    invoice_prefix: str


@dataclass(frozen=True)
class Quote:
    """What a change costs now (whole cents, in micro-dollars) or credits; `rest_micros`: what
    the plan it leaves the customer on costs for the rest of its fee period (whole cents),
    which ends at `until`."""

    charge_micros: int
    credit_micros: int
    description: str
    rest_micros: int = 0
    until: datetime | None = None


async def seats_of(conn: AsyncConnection, customer: Customer) -> int:
    if customer.kind != "org":
        return 1
    query = select(org_members.c.user_id).where(org_members.c.org_id == customer.id)
    return max(1, len((await conn.execute(query)).all()))


async def negotiated_price(conn: AsyncConnection, customer: Customer) -> NegotiatedPrice | None:
    if customer.kind != "org":
        return None
    query = select(enterprise_prices).where(enterprise_prices.c.org_id == customer.id)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    return NegotiatedPrice(
        row["price_type"] == "per_user", PlanInterval(row["interval"]), int(row["price_micros"])
    )


def rest_of_period(
    plan: Plan | None,
    subscription: Subscription,
    *,
    pay_annually: bool,
    seats: int,
    negotiated: NegotiatedPrice | None,
    at: datetime,
) -> int:
    """What `plan` costs from `at` to the end of its fee period, exactly (rounded down)."""
    if plan is None:
        return 0
    annually = billed_annually(plan, pay_annually=pay_annually, negotiated=negotiated)
    start, end = fee_period_bounds(
        subscription.anchor_at, subscription.period_start, annually=annually
    )
    price = fee_period_price(plan, pay_annually=pay_annually, seats=seats, negotiated=negotiated)
    return prorated_micros(price, period_start=start, period_end=end, at=min(max(at, start), end))


async def quote(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    subscription: Subscription | None,
    customer: Customer,
    tier: TierName,
    pay_annually: bool | None,
    now: datetime,
) -> Quote:
    new = catalog.plan(tier)
    if new is None:
        return Quote(0, 0, "")
    seats = await seats_of(conn, customer)
    negotiated = await negotiated_price(conn, customer)
    if subscription is None:
        # A first plan (an org's): its period starts now, its first fee is the whole of it.
        annually = bool(pay_annually)
        first = fee_period_price(new, pay_annually=annually, seats=seats, negotiated=negotiated)
        charge = first.total_micros // MICROS_PER_CENT * MICROS_PER_CENT
        yearly = billed_annually(new, pay_annually=annually, negotiated=negotiated)
        until = fee_period_bounds(now, now, annually=yearly)[1]
        return Quote(charge, 0, f"{new.name.value.capitalize()} plan, first period", charge, until)
    old = current_plan(catalog, subscription)
    annually = subscription.pay_annually if pay_annually is None else pay_annually
    old_rest = rest_of_period(
        old,
        subscription,
        pay_annually=subscription.pay_annually,
        seats=seats,
        negotiated=negotiated,
        at=now,
    )
    new_rest = rest_of_period(
        new, subscription, pay_annually=annually, seats=seats, negotiated=negotiated, at=now
    )
    # Each plan's rest is rounded down to the cent first, and the charge or the credit is the
    # difference of the two: a potential, so the changes at one moment telescope (up then
    # down, or free -> pro -> pro yearly -> free, nets exactly zero) and a plan held from one
    # moment to a later one nets what its rest fell by (never less than zero): no sequence of
    # changes makes money. (Rounding the difference instead made money: the credit of an
    # unrounded difference, or of one rounded as the charges along a longer way were, exceeded
    # what was charged, by up to a cent each time.) A charge is within a cent of the exact
    # difference of the rests.
    difference = _cents(new_rest) - _cents(old_rest)
    charge = max(0, difference)
    end = fee_period_bounds(
        subscription.anchor_at,
        subscription.period_start,
        annually=billed_annually(new, pay_annually=annually, negotiated=negotiated),
    )[1]
    description = f"{new.name.value.capitalize()} plan to {end:%Y-%m-%d} (prorated)"
    return Quote(charge, max(0, -difference), description, _cents(new_rest), end)


def _cents(micros: int) -> int:
    """`micros` rounded down to a whole cent."""
    return micros // MICROS_PER_CENT * MICROS_PER_CENT


async def _upgrade_in_progress(conn: AsyncConnection, customer: Customer) -> bool:
    query = select(plan_change_payments.c.invoice_id).where(
        plan_change_payments.c.customer_id == customer.id,
        plan_change_payments.c.status == PaymentStatus.CHARGING,
    )
    return (await conn.execute(query)).first() is not None


class PaymentStatus(StrEnum):
    """Where a plan change's payment is (plan_change_payments.status)."""

    CHARGING = "charging"
    APPLIED = "applied"
    REFUNDED = "refunded"
    VOID = "void"


async def _record_payment(
    conn: AsyncConnection,
    invoice_id: str,
    customer: Customer,
    tier: TierName,
    now: datetime,
    fee_until: datetime | None,
) -> None:
    await conn.execute(
        insert(plan_change_payments).values(
            invoice_id=invoice_id,
            customer_kind=customer.kind,
            customer_id=customer.id,
            tier=tier.value,
            status=PaymentStatus.CHARGING,
            fee_until=fee_until,
            created_at=now,
            updated_at=now,
        )
    )


async def _mark_payment(
    conn: AsyncConnection, invoice_id: str, status: PaymentStatus, now: datetime
) -> None:
    await conn.execute(
        update(plan_change_payments)
        .where(plan_change_payments.c.invoice_id == invoice_id)
        .values(status=status, updated_at=now)
    )


def _refusal(attempt: Attempt | None, tier: TierName, micros: int) -> PaymentRequired:
    """Why the upgrade was not paid, and what the person can do; the plan did not change."""
    what = f"the {tier.value} plan costs ${format_micros(micros)} now for the rest of the period"
    if attempt is not None and attempt.failure_code == "no_payment_method":
        return PaymentRequired(
            f"{what}, and no payment method is on file: add a card"
            " (POST /user/payment/intent), then change the plan again; your plan did not change"
        )
    if attempt is not None and attempt.status == AttemptStatus.REQUIRES_ACTION:
        return PaymentRequired(
            f"{what}, and your bank asks you to authenticate this payment: use a card that"
            " does not need it, or confirm with your bank, then try again; your plan did not change"
        )
    reason = attempt.failure_message if attempt and attempt.failure_message else "declined"
    return PaymentRequired(
        f"{what}, and the charge failed ({reason}): update your payment method, then try"
        " again; your plan did not change"
    )


async def credit_downgrade(
    conn: AsyncConnection, *, customer: Customer, micros: int, until: datetime, now: datetime
) -> None:
    """A downgrade's credit (`micros`, the unused rest of the old plan over the new one's), in
    the transaction that holds the balance lock, recorded with the end of the fee period of the
    plan it leaves the customer on (`unused_paid` replays it). Set off against plan fees the
    customer still owes: held against each unpaid fee invoice, up to its fee
    (invoicing.fee_credits), and released when it is paid; what exceeds them is credited now."""
    await conn.execute(
        insert(downgrade_credits).values(
            customer_kind=customer.kind,
            customer_id=customer.id,
            credit_micros=micros,
            created_at=now,
            until=until,
        )
    )
    for invoice_id, owed in await _unpaid_fees(conn, customer):
        held = min(micros, owed)
        await hold_credit(conn, customer=customer, invoice_id=invoice_id, micros=held, now=now)
        micros -= held
    await add_credit(conn, customer=customer, micros=micros, now=now)


# A close's fee line (billing.run.close_lines) on an invoice not paid (open, or written off and
# still payable), with what is already held against that invoice; newest first.
_UNPAID_FEES = (
    select(invoices.c.id, invoice_lines.c.amount_micros, held_credits.c.credit_micros)
    .join(invoice_lines, invoice_lines.c.invoice_id == invoices.c.id)
    .outerjoin(held_credits, held_credits.c.invoice_id == invoices.c.id)
    .where(
        invoices.c.status.in_([InvoiceStatus.OPEN.value, InvoiceStatus.UNCOLLECTIBLE.value]),
        invoice_lines.c.kind == LineKind.PLAN_FEE.value,
        invoice_lines.c.reference.like("fee:%"),
    )
    .order_by(invoices.c.created_at.desc(), invoices.c.id)
)


async def _unpaid_fees(conn: AsyncConnection, customer: Customer) -> list[tuple[str, int]]:
    """Each unpaid fee invoice of the customer's, with what of its fee no credit is held for."""
    rows = await conn.execute(_UNPAID_FEES.where(invoices.c.customer_id == customer.id))
    owed = [(str(invoice_id), int(fee) - int(held or 0)) for invoice_id, fee, held in rows]
    return [(invoice_id, micros) for invoice_id, micros in owed if micros > 0]


async def unused_paid(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    customer: Customer,
    subscription: Subscription,
    at: datetime,
) -> int:
    """What of the plan fees the customer paid (or was billed: an unpaid fee's credit is held,
    see `credit_downgrade`) is unused at `at`, rounded down.

    Replayed from the closes' fees (`billing_closes`), the paid upgrades (`plan_change_payments`
    applied, their invoices' fee) and the downgrade credits (`downgrade_credits`): what is
    unused is spread evenly over the fee period it pays for, and each fee, upgrade or credit
    changes it and spreads it over the fee period that one pays for (or, a credit, of the plan
    it left the customer on). Staff changes, seats and negotiated prices add nothing: nobody
    paid for them."""
    plan = current_plan(catalog, subscription)
    negotiated = await negotiated_price(conn, customer)
    yearly = plan is not None and billed_annually(
        plan, pay_annually=subscription.pay_annually, negotiated=negotiated
    )

    def fee_end(start: datetime, until: datetime | None) -> datetime:
        # Recorded since 0015; before it, a fee period of the plan the customer is on.
        return until or fee_period_bounds(subscription.anchor_at, start, annually=yearly)[1]

    closes = billing_closes.c
    fees = await conn.execute(
        select(closes.period_end, closes.fee_micros, closes.fee_until).where(
            closes.customer_id == customer.id, closes.fee_micros > 0, closes.period_end <= at
        )
    )
    # A close comes before a change at the same moment: a change closes the period first.
    events = [(start, 0, int(fee), fee_end(start, until)) for start, fee, until in fees]
    payments = plan_change_payments.c
    upgrades = await conn.execute(
        select(payments.created_at, invoice_lines.c.amount_micros, payments.fee_until)
        .join(invoice_lines, invoice_lines.c.invoice_id == payments.invoice_id)
        .where(
            payments.customer_id == customer.id,
            payments.status == PaymentStatus.APPLIED.value,
            payments.created_at <= at,
            invoice_lines.c.kind == LineKind.PLAN_FEE.value,
        )
    )
    events += [(when, 1, int(fee), fee_end(when, until)) for when, fee, until in upgrades]
    credits = downgrade_credits.c
    taken = await conn.execute(
        select(credits.created_at, credits.credit_micros, credits.until).where(
            credits.customer_id == customer.id, credits.created_at <= at
        )
    )
    events += [(when, 2, -int(micros), until) for when, micros, until in taken]
    unused, since, until = Fraction(0), at, at
    for moment, _, delta, ends in sorted(events):
        unused = max(Fraction(0), _left(unused, since, until, moment) + delta)
        since, until = moment, ends
    return int(_left(unused, since, until, at))


def _left(micros: Fraction, since: datetime, until: datetime, at: datetime) -> Fraction:
    """What is left at `at` of `micros` spread evenly from `since` to `until`."""
    if micros == 0 or at >= until:
        return Fraction(0)
    if at <= since:
        return micros
    return micros * Fraction(
        (until - at) // timedelta(microseconds=1), (until - since) // timedelta(microseconds=1)
    )


async def downgrade_credit(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    customer: Customer,
    subscription: Subscription | None,
    price: Quote,
    now: datetime,
) -> int:
    """What a change priced at `price` credits: its credit, never more than what was paid and
    is unused, less what the plan the customer stays on needs of it (a comped plan's rest was
    never paid)."""
    credit = price.credit_micros
    if credit and subscription is not None:
        paid = await unused_paid(
            conn, catalog=catalog, customer=customer, subscription=subscription, at=now
        )
        credit = min(credit, _cents(max(0, paid - price.rest_micros)))
    return credit


def _fee_line(tier: TierName, price: Quote, reference: str) -> NewLine:
    return plan_fee_line(
        tier_name=tier.value.capitalize(),
        period=price.description,
        amount_micros=price.charge_micros,
        reference=reference[:128],
    )


@dataclass(frozen=True)
class PlanChange:
    """A customer's own plan change as asked: whose plan, to which tier, billed yearly or not
    (None: as it is), and who asks."""

    customer: Customer
    tier: TierName
    pay_annually: bool | None
    actor: str


@dataclass(frozen=True)
class Review:
    """What a customer's change to a tier would do now: the invoice it charges (tax included),
    or the credit it gives; `current`, the plan it changes from."""

    current: Plan | None
    charged: Amounts | None
    credit_micros: int


async def review_change(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    change: PlanChange,
    terms: ChangeTerms,
    now: datetime,
) -> Review:
    """What `change_plan_paid` would charge or credit now, read-only (the console shows it
    before the change is confirmed)."""
    customer = change.customer
    subscription = await get_subscription(conn, customer=customer)
    if subscription is not None and refresh_due(subscription, now):
        # The change starts the period that began first: priced in it.
        start = period_start(subscription.anchor_at, now)
        subscription = replace(subscription, period_start=start)
    price = await _quote_change(conn, catalog, change, subscription, now)
    if price.charge_micros:
        contact = (await billing_contacts(conn, customers=[customer]))[customer]
        amounts = invoice_amounts(
            [_fee_line(change.tier, price, "")], tax_rates=terms.tax_rates, country=contact.country
        )
        return Review(current_plan(catalog, subscription), amounts, 0)
    credit = await downgrade_credit(
        conn, catalog=catalog, customer=customer, subscription=subscription, price=price, now=now
    )
    return Review(current_plan(catalog, subscription), None, credit)


async def _quote_change(
    conn: AsyncConnection,
    catalog: Catalog,
    change: PlanChange,
    subscription: Subscription | None,
    now: datetime,
) -> Quote:
    return await quote(
        conn,
        catalog=catalog,
        subscription=subscription,
        customer=change.customer,
        tier=change.tier,
        pay_annually=change.pay_annually,
        now=now,
    )


async def change_plan_paid(
    engine: AsyncEngine,
    *,
    catalog: Catalog,
    processor: PaymentProcessor,
    terms: ChangeTerms,
    change: PlanChange,
    now: datetime,
    create_only: bool,
) -> None:
    """A customer's own plan change: paid first if it costs more (see the module docstring).

    A change that finds another one's payment in progress waits for it (a few seconds at
    most) and is then priced from where that one left the plan: concurrent changes serialize,
    and only a payment that stays in progress longer makes it a 409 (one a crash left is
    settled here once it is stale, so the customer can change again)."""
    await repair_plan_change_payments(engine, processor, now=now, customer=change.customer)
    for delay in _WAITS:
        try:
            return await _change_plan_paid(
                engine, catalog, processor, terms, change, create_only=create_only, now=now
            )
        except _InProgress:
            await asyncio.sleep(delay)
    raise Conflict("a payment for a plan change is in progress: try again in a minute")


class _InProgress(Exception):
    pass


# Up to about 5 s in all.
_WAITS = [0.01, 0.02, 0.05, 0.1, 0.2] + [0.5] * 9


async def _change_plan_paid(
    engine: AsyncEngine,
    catalog: Catalog,
    processor: PaymentProcessor,
    terms: ChangeTerms,
    change: PlanChange,
    *,
    create_only: bool,
    now: datetime,
) -> None:
    customer, tier, pay_annually = change.customer, change.tier, change.pay_annually

    async def apply_change(conn: AsyncConnection) -> None:
        await change_plan(
            conn,
            catalog=catalog,
            customer=customer,
            tier=tier,
            pay_annually=pay_annually,
            actor=change.actor,
            now=now,
            create_only=create_only,
        )

    async with transaction(engine) as conn:
        await lock_balance(conn, customer=customer)
        # A period that ended and is not closed yet is closed first, at the plan it ended on:
        # the close bills the new period's fee at that plan, and the change is priced against
        # it (priced alone, an upgrade would charge the new period that the close then bills
        # again, and a downgrade credit the rest of a fee nobody billed).
        if await has_period_to_close(conn, customer=customer, at=now):
            await claim(conn, catalog, [customer], at=now)
        _, subscription = await refresh_customer(conn, catalog=catalog, customer=customer, now=now)
        price = await _quote_change(conn, catalog, change, subscription, now)
        if price.charge_micros == 0:
            credit = await downgrade_credit(
                conn,
                catalog=catalog,
                customer=customer,
                subscription=subscription,
                price=price,
                now=now,
            )
            await apply_change(conn)
            if credit:
                assert price.until is not None  # a credit is of a plan's rest, which ends
                await credit_downgrade(
                    conn, customer=customer, micros=credit, until=price.until, now=now
                )
            return
        # Every rule of the change (the tier's kind, an enterprise price, POST on a paid plan)
        # is checked before anything is charged: the change is tried and rolled back.
        trial = await conn.begin_nested()
        await apply_change(conn)
        await trial.rollback()
        if await _upgrade_in_progress(conn, customer):
            raise _InProgress
        reference = f"upgrade:{customer.id}:{tier.value}:{now.isoformat()}"
        # Addressed and taxed as the close's fee invoice is: the same plan's fee, charged now.
        contact = (await billing_contacts(conn, customers=[customer]))[customer]
        invoice = await issue_invoice(
            conn,
            customer=customer,
            lines=[_fee_line(tier, price, reference)],
            description=f"Upgrade to {tier.value}",
            tax_rates=terms.tax_rates,
            prefix=terms.invoice_prefix,
            now=now,
            contact=contact,
        )
        await _record_payment(conn, invoice.id, customer, tier, now, price.until)
    processor_id = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice.id, processor_customer_id=processor_id, now=now
    )
    if not outcome.invoice.paid and not await _paid_after_all(engine, processor, outcome, now):
        raise _refusal(outcome.attempt, tier, invoice.total_micros)
    try:
        async with transaction(engine) as conn:
            await apply_change(conn)
            await _mark_payment(conn, invoice.id, PaymentStatus.APPLIED, now)
    except Exception as exc:
        await _refund_unapplied(engine, processor, invoice.id, now=now)
        raise _not_applied(exc, tier, outcome.invoice.total_micros) from exc


async def _paid_after_all(
    engine: AsyncEngine, processor: PaymentProcessor, outcome: ChargeOutcome, now: datetime
) -> bool:
    """An unpaid upgrade's invoice is voided; a charge still waiting for the customer is
    canceled first, and one they completed meanwhile pays the upgrade after all."""
    invoice_id = outcome.invoice.id
    if outcome.attempt is not None and outcome.attempt.status == AttemptStatus.REQUIRES_ACTION:
        # Voided anyway if the processor does not answer: a success arriving later is refunded.
        with contextlib.suppress(ServiceUnavailable):
            await resolve_awaiting_action(engine, processor, invoice_id=invoice_id, now=now)
    async with transaction(engine) as conn:
        if (await lock_invoice(conn, invoice_id=invoice_id)).paid:
            return True
        await void_invoice(conn, invoice_id=invoice_id, now=now)
        await _mark_payment(conn, invoice_id, PaymentStatus.VOID, now)
    return False


# The refund of an upgrade paid and not applied: one per invoice, whoever retries it.
UNAPPLIED_REFUND_KEY = "upgrade-not-applied"


async def _refund_unapplied(
    engine: AsyncEngine, processor: PaymentProcessor, invoice_id: str, *, now: datetime
) -> None:
    async with transaction(engine) as conn:
        invoice = await lock_invoice(conn, invoice_id=invoice_id)
    await refund_invoice(
        engine,
        processor,
        invoice_id=invoice.id,
        amount_micros=invoice.amount_paid_micros - invoice.amount_refunded_micros,
        idempotency_key=UNAPPLIED_REFUND_KEY,
        actor="system",
        now=now,
    )
    async with transaction(engine) as conn:
        await _mark_payment(conn, invoice_id, PaymentStatus.REFUNDED, now)


# A plan change's payment still charging after this long was left by a crash: no request
# lives this long (each processor call gives up within a minute).
STALE_PAYMENT = timedelta(minutes=10)


async def repair_plan_change_payments(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    now: datetime,
    customer: Customer | None = None,
) -> int:
    """Plan-change payments a crash left charging (of `customer`, or of all), settled: paid
    ones refunded in full, since the change they paid for was never applied (applied now, it
    would be priced for another moment); unpaid ones voided. A charge still pending is left to
    `reconcile_pending_charges`, which runs first at start and in each billing run. Answers
    how many were settled."""
    query = select(plan_change_payments.c.invoice_id).where(
        plan_change_payments.c.status == PaymentStatus.CHARGING,
        plan_change_payments.c.created_at <= now - STALE_PAYMENT,
    )
    if customer is not None:
        query = query.where(plan_change_payments.c.customer_id == customer.id)
    async with reading(engine) as conn:
        stale = list((await conn.execute(query.order_by("created_at"))).scalars())
    settled = 0
    for invoice_id in stale:
        try:
            await _settle_stale_payment(engine, processor, invoice_id, now=now)
        except ZoopayError as exc:  # a charge pending, a processor down: left to the next run
            logger.warning("plan change payment %s left charging: %s", invoice_id, exc.message)
            continue
        settled += 1
    return settled


async def repair_on_start(engine: AsyncEngine, processor: PaymentProcessor, now: datetime) -> None:
    """`repair_plan_change_payments` as a server starts: a database or processor that does not
    answer does not stop the start (the next start, or `zoopay billing run`, repairs)."""
    try:
        repaired = await repair_plan_change_payments(engine, processor, now=now)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        logger.warning("repairing plan change payments at start failed: %s", exc)
        return
    if repaired:
        logger.info("settled %d plan change payments a crash left charging", repaired)


async def _settle_stale_payment(
    engine: AsyncEngine, processor: PaymentProcessor, invoice_id: str, *, now: datetime
) -> None:
    async with transaction(engine) as conn:
        invoice = await lock_invoice(conn, invoice_id=invoice_id)
        if not invoice.paid:
            if invoice.status != InvoiceStatus.VOID:
                await void_invoice(conn, invoice_id=invoice_id, now=now)
            await _mark_payment(conn, invoice_id, PaymentStatus.VOID, now)
            return
        if invoice.amount_refunded_micros == invoice.amount_paid_micros:
            await _mark_payment(conn, invoice_id, PaymentStatus.REFUNDED, now)
            return
    await _refund_unapplied(engine, processor, invoice_id, now=now)


def _not_applied(exc: Exception, tier: TierName, micros: int) -> ZoopayError:
    why = exc.message if isinstance(exc, ZoopayError) else "an internal error"
    text = (
        f"the payment went through but the change to the {tier.value} plan failed ({why}): the"
        f" ${format_micros(micros)} charged was refunded and your plan did not change; try again"
    )
    if isinstance(exc, ZoopayError) and exc.status_code < 500:
        return Conflict(text)
    return ServiceUnavailable(text, retry_after_seconds=5)
