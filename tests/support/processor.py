"""The embedded processor as the money-movement tests drive it: a customer at the processor
with one of Stripe's test cards (zoopay.processors.embedded), and what the processor holds."""

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.db.engine import reading, transaction
from zoopay.db.tables import processor_charges, processor_refunds
from zoopay.invoicing.service import credits_line, issue_invoice
from zoopay.ledger.service import Customer
from zoopay.payments.service import ensure_processor_customer
from zoopay.processors.base import Charge, ProcessorUnavailable
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
        method = await processor.attach_test_card(customer_id, card)
        await processor.set_default_payment_method(customer_id, method.id)
    return customer_id


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

    async def charge(self, customer_id: str, **kwargs: object) -> Charge:  # type: ignore[override]
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
