"""What a customer and staff do with invoices, for the API's routes and the console alike: read
one of the customer's own, pay it now, buy credits, its PDF. Each runs its own
transactions around the processor's calls (never call one inside a transaction)."""

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.config import Settings
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest, Conflict, NotFound, quoted
from zoopay.invoicing.documents import Issuer, account_email, render_pdf
from zoopay.invoicing.service import (
    Attempt,
    Invoice,
    apply_authentication,
    charge_invoice,
    credits_line,
    get_invoice,
    issue_invoice,
    waiting_for_customer,
)
from zoopay.ledger.service import Customer
from zoopay.money import to_micros
from zoopay.payments.service import billing_contacts, ensure_processor_customer
from zoopay.processors.base import PaymentProcessor
from zoopay.processors.embedded import EmbeddedProcessor

MIN_CREDITS = Decimal("1.00")
MAX_CREDITS = Decimal("100000.00")


def checked_invoice_id(invoice_id: str) -> str:
    try:
        return str(uuid.UUID(invoice_id))
    except ValueError:
        raise BadRequest(f"invoice id {quoted(invoice_id)} is not a UUID") from None


async def own_invoice(engine: AsyncEngine, *, customer: Customer, invoice_id: str) -> Invoice:
    """One of `customer`'s invoices (another's is a 404, as none)."""
    invoice_id = checked_invoice_id(invoice_id)
    async with reading(engine) as conn:
        return await get_invoice(conn, invoice_id=invoice_id, customer=customer)


async def pay_invoice_now(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customer: Customer,
    invoice_id: str,
    now: datetime,
) -> Invoice:
    """Charge one of `customer`'s invoices with their default card; a 402 saying what to do
    when the charge fails."""
    # Its id as stored: the path's may be any spelling of the UUID.
    invoice = await own_invoice(engine, customer=customer, invoice_id=invoice_id)
    processor_customer = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    return await _charge_now(engine, processor, invoice.id, processor_customer, now)


async def _charge_now(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    invoice_id: str,
    processor_customer: str,
    now: datetime,
) -> Invoice:
    """The invoice charged at once with the default card: paid, or a 402 saying what to do."""
    outcome = await charge_invoice(
        engine, processor, invoice_id=invoice_id, processor_customer_id=processor_customer, now=now
    )
    return outcome.raise_unless_paid()


async def waiting_payment(
    engine: AsyncEngine, *, processor: PaymentProcessor, customer: Customer, invoice_id: str
) -> tuple[Invoice, Attempt]:
    """One of `customer`'s invoices whose charge waits for them to authenticate it at their
    bank, on the embedded processor, whose bank page zoopay serves (on Stripe, Stripe's own
    pages do it): NotFound on another processor, Conflict when nothing waits."""
    if not isinstance(processor, EmbeddedProcessor):
        raise NotFound("payments are authenticated on the payment processor's own pages")
    invoice = await own_invoice(engine, customer=customer, invoice_id=invoice_id)
    async with reading(engine) as conn:
        waiting = (await waiting_for_customer(conn, invoice_ids=[invoice.id])).get(invoice.id)
    if waiting is None or waiting.charge_id is None:
        raise Conflict(f"no payment of invoice {invoice.number} waits for authentication")
    return invoice, waiting


async def authenticate_payment(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customer: Customer,
    invoice_id: str,
    approved: bool,
    now: datetime,
) -> Invoice:
    """The customer's answer to their bank (the embedded processor plays the bank): approved,
    the charge succeeds and pays the invoice; refused, it fails, and the invoice stays open."""
    _, waiting = await waiting_payment(
        engine, processor=processor, customer=customer, invoice_id=invoice_id
    )
    assert isinstance(processor, EmbeddedProcessor) and waiting.charge_id is not None
    await processor.authenticate_charge(waiting.charge_id, approved=approved)
    return await apply_authentication(engine, processor, attempt=waiting, now=now)


def credits_micros(amount: Decimal) -> int:
    if amount != amount.quantize(Decimal("0.01")):
        raise BadRequest("credits are bought in whole cents, e.g. 25.00")
    if not MIN_CREDITS <= amount <= MAX_CREDITS:
        raise BadRequest(f"credits are bought from {MIN_CREDITS} to {MAX_CREDITS} USD at a time")
    return to_micros(amount)


async def buy_credits(
    engine: AsyncEngine,
    *,
    processor: PaymentProcessor,
    customer: Customer,
    amount: Decimal,
    tax_rates: Mapping[str, Decimal],
    prefix: str,
    now: datetime,
) -> Invoice:
    """Stable credits: an invoice issued and charged at once; the credits come when it is paid
    (a failed charge is a 402 and leaves the invoice open, nothing credited)."""
    micros = credits_micros(amount)
    processor_customer = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    async with transaction(engine) as conn:
        contact = (await billing_contacts(conn, customers=[customer]))[customer]
        invoice = await issue_invoice(
            conn,
            customer=customer,
            lines=[credits_line(amount_micros=micros)],
            description="Prepaid API credits",
            tax_rates=tax_rates,
            prefix=prefix,
            now=now,
            contact=contact,
        )
    return await _charge_now(engine, processor, invoice.id, processor_customer, now)


def issuer_of(settings: Settings) -> Issuer:
    """Who issues the invoices, as the settings name them."""
    return Issuer(settings.invoice_issuer, settings.invoice_issuer_address)


async def billed_email(engine: AsyncEngine, invoice: Invoice) -> str | None:
    """Who the invoice is billed to when it names no email: the account's."""
    if invoice.customer_email:
        return None
    async with reading(engine) as conn:
        return await account_email(conn, customer=invoice.customer)


async def pdf_response(engine: AsyncEngine, invoice: Invoice, issuer: Issuer) -> Response:
    name = f"invoice-{invoice.number or invoice.id}.pdf"
    return Response(
        render_pdf(invoice, issuer, await billed_email(engine, invoice)),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private"},
    )
