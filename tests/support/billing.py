"""Billing from a test: the embedded processor, cards on file, `billing run` in-process."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock
from zoopay.billing.run import BillingTerms, RunSummary, run_billing
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading
from zoopay.journal.service import verify
from zoopay.ledger.service import Customer
from zoopay.payments.service import ensure_processor_customer
from zoopay.processors.embedded import EmbeddedProcessor

TERMS = BillingTerms(dunning_days=(1, 3, 5, 7), tax_rates={}, invoice_prefix="ZP")


def embedded(engine: AsyncEngine, clock: Clock) -> EmbeddedProcessor:
    return EmbeddedProcessor(engine, lambda: clock.now)


async def add_card(
    engine: AsyncEngine,
    processor: EmbeddedProcessor,
    customer: Customer,
    now: datetime,
    card: str = "pm_card_visa",
) -> str:
    """A card on file as the customer's default (Stripe's test tokens); answers its id."""
    processor_id = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    attached = await processor.attach_test_card(processor_id, card)
    await processor.set_default_payment_method(processor_id, attached.id)
    return attached.id


async def bill(
    engine: AsyncEngine,
    catalog: Catalog,
    processor: EmbeddedProcessor,
    at: datetime,
    terms: BillingTerms = TERMS,
) -> RunSummary:
    """`zoopay billing run --at`, in this process; the books verified clean after it."""
    summary = await run_billing(engine, catalog, processor, terms, at=at)
    await books_are_clean(engine)
    return summary


async def books_are_clean(engine: AsyncEngine) -> None:
    async with reading(engine) as conn:
        assert await verify(conn) == []
