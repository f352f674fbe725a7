"""Billing credits: money owed back to a customer for the unused rest of a plan fee, taken off
their next invoices' fees (billing.run), never paid out and never API credits.

A credit for the rest of a fee that is not paid yet is held against the invoice that bills
that fee, and becomes a billing credit only when that invoice is paid: credited at once, it
would outlive the invoice that dunning writes off, and pay for service nobody paid for. An
invoice that is never paid (void, or uncollectible for good) never releases it.

Holding and releasing serialize on the customer's balance lock: a downgrade holds a credit
under it after reading the invoice unpaid; settling takes it before releasing, so a credit
held by a downgrade that read the invoice before it was paid is released by that payment.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.tables import billing_credits, held_credits
from zoopay.ledger.service import Customer


async def add_credit(
    conn: AsyncConnection, *, customer: Customer, micros: int, now: datetime
) -> None:
    if micros <= 0:
        return
    updated = await conn.execute(
        update(billing_credits)
        .where(billing_credits.c.customer_id == customer.id)
        .values(credit_micros=billing_credits.c.credit_micros + micros, updated_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            insert(billing_credits).values(
                customer_id=customer.id,
                customer_kind=customer.kind,
                credit_micros=micros,
                updated_at=now,
            )
        )


async def hold_credit(
    conn: AsyncConnection, *, customer: Customer, invoice_id: str, micros: int, now: datetime
) -> None:
    """Hold `micros` until invoice `invoice_id` (unpaid, the customer's) is paid; the caller
    holds the customer's balance lock."""
    if micros <= 0:
        return
    updated = await conn.execute(
        update(held_credits)
        .where(held_credits.c.invoice_id == invoice_id)
        .values(credit_micros=held_credits.c.credit_micros + micros, updated_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            insert(held_credits).values(
                invoice_id=invoice_id,
                customer_id=customer.id,
                customer_kind=customer.kind,
                credit_micros=micros,
                created_at=now,
                updated_at=now,
            )
        )


async def release_held_credits(
    conn: AsyncConnection, *, invoice_ids: Sequence[str], now: datetime
) -> None:
    """The credits held against `invoice_ids`, just paid, become billing credits; the caller
    holds the balance locks of those invoices' customers."""
    if not invoice_ids:
        return
    query = select(held_credits).where(held_credits.c.invoice_id.in_(invoice_ids))
    held = (await conn.execute(query)).mappings().all()
    if not held:
        return
    await conn.execute(delete(held_credits).where(held_credits.c.invoice_id.in_(invoice_ids)))
    for row in sorted(held, key=lambda row: row["customer_id"]):
        customer = Customer(row["customer_kind"], row["customer_id"])
        await add_credit(conn, customer=customer, micros=int(row["credit_micros"]), now=now)
