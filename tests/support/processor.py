"""The embedded processor as the money-movement tests drive it: a customer at the processor
with one of Stripe's test cards (zoopay.processors.embedded), and what the processor holds."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import processor_charges, processor_refunds
from zoopay.invoicing.service import (
    ChargeOutcome,
    Invoice,
    InvoiceStatus,
    NewLine,
    charge_invoice,
    credits_line,
    get_invoice,
    issue_invoice,
    list_attempts,
)
from zoopay.ledger.service import Customer, get_balance
from zoopay.payments.service import Contact, ensure_processor_customer
from zoopay.processors.base import Charge, ChargeRequest, PaymentProcessor, ProcessorUnavailable
from zoopay.processors.embedded import EmbeddedProcessor

VISA = "pm_card_visa"
DECLINES = "pm_card_chargeCustomerFail"
AUTHENTICATES = "pm_card_authenticationRequired"
DOLLARS_25 = 25_000_000


def embedded(engine: AsyncEngine, clock: Callable[[], datetime]) -> EmbeddedProcessor:
    return EmbeddedProcessor(engine, clock)


async def processor_customer(
    engine: AsyncEngine,
    processor: EmbeddedProcessor,
    customer: Customer,
    now: datetime,
    card: str | None = VISA,
) -> str:
    """The customer's id at the processor, with `card` as its default (None: no card)."""
    customer_id = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    if card is not None:
        await default_card(processor, customer_id, card)
    return customer_id


async def default_card(processor: EmbeddedProcessor, customer_id: str, card: str = VISA) -> str:
    """Attach `card` (one of Stripe's test tokens) and make it the default; answers its id."""
    method = await processor.attach_test_card(customer_id, card)
    await processor.set_default_payment_method(customer_id, method.id)
    return method.id


async def succeeded_cents(engine: AsyncEngine) -> int:
    """Everything the processor took, in cents."""
    async with reading(engine) as conn:
        query = select(func.coalesce(func.sum(processor_charges.c.amount_cents), 0)).where(
            processor_charges.c.status == "succeeded"
        )
        return int((await conn.execute(query)).scalar_one())


async def charge_count(engine: AsyncEngine) -> int:
    async with reading(engine) as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(processor_charges))).scalar_one()
        )


async def refunded_cents(engine: AsyncEngine) -> int:
    async with reading(engine) as conn:
        query = select(func.coalesce(func.sum(processor_refunds.c.amount_cents), 0))
        return int((await conn.execute(query)).scalar_one())


class Unreachable(EmbeddedProcessor):
    """The embedded processor behind a network that loses every charge request on its way."""

    async def charge(self, request: ChargeRequest) -> Charge:
        raise ProcessorUnavailable("connection reset")


async def open_credits_invoice(
    engine: AsyncEngine, now: datetime, customer: Customer, micros: int = DOLLARS_25
) -> str:
    """An open invoice for `micros` of credits (25.00 USD unless told): its id."""
    async with transaction(engine) as conn:
        invoice = await issue_invoice(
            conn,
            customer=customer,
            lines=[credits_line(amount_micros=micros)],
            description="credits",
            tax_rates={},
            prefix="ZP",
            now=now,
        )
    return invoice.id


@dataclass(frozen=True)
class Waiting:
    """An open invoice whose first charge waits for the customer (requires_action)."""

    customer: Customer
    processor_customer_id: str
    invoice_id: str
    charge_id: str


async def pay_again(
    engine: AsyncEngine, processor: PaymentProcessor, now: datetime, waiting: Waiting
) -> ChargeOutcome:
    return await charge_invoice(
        engine,
        processor,
        invoice_id=waiting.invoice_id,
        processor_customer_id=waiting.processor_customer_id,
        now=now,
    )


async def invoice_state(engine: AsyncEngine, invoice_id: str) -> tuple[InvoiceStatus, list[str]]:
    """The invoice's status and its attempts' statuses, first attempt first."""
    async with reading(engine) as conn:
        invoice = await get_invoice(conn, invoice_id=invoice_id)
        attempts = await list_attempts(conn, invoice_id=invoice_id)
    return invoice.status, [attempt.status.value for attempt in attempts]


async def issue(
    engine: AsyncEngine,
    clock: Clock,
    customer: Customer,
    lines: list[NewLine],
    *,
    country: str | None = None,
    tax_rates: dict[str, Decimal] | None = None,
) -> Invoice:
    """An open invoice of `lines` for `customer`, numbered ZP-…"""
    async with transaction(engine) as conn:
        return await issue_invoice(
            conn,
            customer=customer,
            lines=lines,
            description="test invoice",
            tax_rates=tax_rates or {},
            prefix="ZP",
            now=clock.now,
            contact=Contact(country=country),
        )


async def stable_micros(engine: AsyncEngine, customer: Customer) -> int:
    """The customer's stable credits (bought), as the ledger holds them."""
    async with reading(engine) as conn:
        return (await get_balance(conn, customer=customer)).stable_micros
