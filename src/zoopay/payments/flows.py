"""What a customer does with their payment details, across zoopay and the processor.

Each flow calls the processor holding no write transaction of zoopay's (the processor commits
on its own; on SQLite a held write lock would block it), then records zoopay's side in a short
transaction of its own.
"""

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.db.engine import reading, transaction
from zoopay.db.tables import balances
from zoopay.errors import BadRequest, CardDeclined, Conflict, NotFound
from zoopay.ledger.service import Customer
from zoopay.payments import service
from zoopay.payments.service import BillingDetails, PaymentCustomer
from zoopay.processors.base import Card, PaymentProcessor, ProcessorError
from zoopay.processors.stripe import StripeProcessor


@dataclass(frozen=True)
class CustomerStatement:
    """A customer's billing information with what Zoo's Customer shows beside it."""

    record: PaymentCustomer
    email: str
    total_due_micros: int


async def total_due(conn: AsyncConnection, *, customer: Customer) -> int:
    due = (
        await conn.execute(
            select(balances.c.total_due_micros).where(balances.c.customer_id == customer.id)
        )
    ).scalar_one_or_none()
    return int(due or 0)


async def _statement(conn: AsyncConnection, record: PaymentCustomer) -> CustomerStatement:
    email, _ = await service.customer_contact(conn, customer=record.customer)
    due = await total_due(conn, customer=record.customer)
    return CustomerStatement(record, email, due)


async def read_billing_info(conn: AsyncConnection, *, customer: Customer) -> CustomerStatement:
    return await _statement(conn, await service.billing_info(conn, customer=customer))


async def save_billing_info(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customer: Customer,
    details: BillingDetails,
    creating: bool,
    now: datetime,
) -> CustomerStatement:
    """POST (`creating`) or PUT the billing information; the processor customer gets its name."""
    if not creating:
        # A PUT before any POST is a 404 that makes no processor customer.
        async with reading(engine) as conn:
            await service.billing_info(conn, customer=customer)
    processor_id = await service.ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    async with transaction(engine) as conn:
        record = await service.save_billing_info(
            conn, customer=customer, details=details, creating=creating, now=now
        )
        statement = await _statement(conn, record)
    await processor.update_customer(processor_id, email=statement.email, name=details.name)
    return statement


async def set_vat_id(
    engine: AsyncEngine, *, customer: Customer, vat_id: str | None, now: datetime
) -> CustomerStatement:
    async with transaction(engine) as conn:
        record = await service.set_vat_id(conn, customer=customer, vat_id=vat_id, now=now)
        return await _statement(conn, record)


async def delete_billing_info(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, now: datetime
) -> None:
    """DELETE: 409 while money is due; the customer's cards are detached, then the billing
    information forgotten (a retry after a failure in between finishes the job)."""
    async with reading(engine) as conn:
        record = await service.billing_info(conn, customer=customer)
        reason = await service.why_not_deletable(conn, customer=customer)
    if reason is not None:
        raise Conflict(reason)
    for card in await processor.list_payment_methods(record.processor_customer_id):
        await processor.detach_payment_method(record.processor_customer_id, card.id)
    async with transaction(engine) as conn:
        await service.forget_billing_info(conn, customer=customer, now=now)


async def create_setup_intent(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, now: datetime
) -> str:
    """A setup intent's client secret: the browser confirms it with a card."""
    processor_id = await service.ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    return (await processor.create_setup_intent(processor_id)).client_secret


async def list_cards(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer
) -> list[Card]:
    """The customer's cards, the default first; none before they have a processor customer."""
    async with reading(engine) as conn:
        processor_id = await service.processor_customer_id(conn, customer=customer)
    if processor_id is None:
        return []
    return await processor.list_payment_methods(processor_id)


async def _processor_id(engine: AsyncEngine, customer: Customer, *, missing: str) -> str:
    """The customer's processor customer id; one who has none has no card or setup intent at
    the processor either: a 404 saying `missing`."""
    async with reading(engine) as conn:
        processor_id = await service.processor_customer_id(conn, customer=customer)
    if processor_id is None:
        raise NotFound(missing)
    return processor_id


# A processor's change of one card: (processor customer id, payment method id).
CardChange = Callable[[str, str], Awaitable[None]]


async def remove_card(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, method_id: str
) -> None:
    """Detach a card; another customer's (or an unknown one) is a 404."""
    await _change_card(engine, customer, method_id, processor.detach_payment_method)


async def make_default(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, method_id: str
) -> None:
    """Make a card the default; another customer's (or an unknown one) is a 404."""
    await _change_card(engine, customer, method_id, processor.set_default_payment_method)


async def _change_card(
    engine: AsyncEngine, customer: Customer, method_id: str, change: CardChange
) -> None:
    processor_id = await _processor_id(engine, customer, missing=f"no payment method {method_id}")
    with _refusals_as_errors():
        await change(processor_id, method_id)


async def adopt_confirmed_card(
    engine: AsyncEngine,
    *,
    processor: StripeProcessor,
    customer: Customer,
    setup_intent_id: str,
) -> None:
    """After Stripe.js confirmed a setup intent in the browser: the card it attached becomes
    the default if the customer has none (as `setup_intent.succeeded` would make it; whichever
    comes first does it). Another customer's intent is a 404, an unconfirmed one a 409."""
    processor_id = await _processor_id(engine, customer, missing="No such setup intent")
    with _refusals_as_errors():
        method_id = await processor.confirmed_method(processor_id, setup_intent_id)
        await processor.adopt_default(processor_id, method_id)


@contextmanager
def _refusals_as_errors() -> Iterator[None]:
    """A processor's refusal within, raised as zoopay's error (`processor_refusal`)."""
    try:
        yield
    except ProcessorError as error:
        raise processor_refusal(error) from None


async def portal_link(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customer: Customer,
    return_url: str,
    now: datetime,
) -> str | None:
    """The processor's own card page for the customer, or None (the console is the page)."""
    processor_id = await service.ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    return await processor.portal_url(processor_id, return_url=return_url)


def processor_refusal(error: ProcessorError) -> Exception:
    """A processor's refusal as zoopay's error: a declined card is 402 `card_declined`, a
    thing that is not the customer's a 404, a used one a 409, anything else a 400."""
    if error.code == "card_declined":
        return CardDeclined(error.message)
    if error.code == "resource_missing":
        return NotFound(error.message)
    if error.code == "setup_intent_unexpected_state":
        return Conflict(error.message)
    return BadRequest(error.message)
