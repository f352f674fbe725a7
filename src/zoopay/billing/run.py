"""`zoopay billing run`: close every ended period, invoice it, charge it, dun what failed.

The run is a sequence of resumable steps; each records what it did in its own transactions,
and a rerun (a second run, or one after a crash) picks up only what is left:
1. reconcile charge attempts left pending (a crash between the processor's answer and the
   commit): the processor is asked by idempotency key, never charged again;
2. close: claim every ended period, a chunk of customers per transaction (billing.close);
3. invoice: one invoice per claimed close, numbered, a chunk per transaction;
4. charge every open invoice never tried, concurrently with a bound (`CHARGE_CONCURRENCY`);
5. dun: retry failed invoices whose retry day came (`ZOOPAY_DUNNING_DAYS`); when the last retry
   failed, the invoice is uncollectible and the customer delinquent.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.billing.close import CloseStatus, claim, claim_early, customers_to_close
from zoopay.billing.dunning import exhausted, retry_due
from zoopay.catalog.service import Catalog
from zoopay.db.bulk import select_where_one_of
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import billing_closes, billing_credits, invoice_payment_attempts, invoices
from zoopay.errors import Conflict, ServiceUnavailable
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    NewLine,
    charge_invoice,
    issue_invoice,
    mark_uncollectible,
    plan_fee_line,
    reconcile_pending_charges,
    usage_line,
)
from zoopay.ledger.service import Customer
from zoopay.payments.service import ensure_processor_customer, set_delinquent
from zoopay.payments.thresholds import DEFAULT_MICROS
from zoopay.processors.base import PaymentProcessor

# Customers per claiming or invoicing transaction: short locks, few round trips per customer.
CLOSE_CHUNK = 1000
# Charges in flight at once: the processor's (and the database pool's) share of the work.
CHARGE_CONCURRENCY = 16


@dataclass(frozen=True)
class BillingTerms:
    """What the run needs from the settings."""

    dunning_days: Sequence[int]
    tax_rates: dict[str, Decimal]
    invoice_prefix: str


@dataclass
class RunSummary:
    reconciled: int = 0
    closed: int = 0
    nothing_due: int = 0
    invoiced: int = 0
    charged: int = 0
    paid: int = 0
    failed: int = 0
    retried: int = 0
    uncollectible: int = 0
    early: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


async def close_periods(
    engine: AsyncEngine,
    catalog: Catalog,
    *,
    at: datetime,
    summary: RunSummary | None = None,
    chunk: int = CLOSE_CHUNK,
) -> RunSummary:
    """Claim every ended period, `chunk` customers per transaction."""
    summary = summary or RunSummary()
    async with reading(engine) as conn:
        customers = await customers_to_close(conn, at=at)
    for first in range(0, len(customers), chunk):
        async with transaction(engine) as conn:
            closed = await claim(conn, catalog, customers[first : first + chunk], at=at)
        summary.closed += len(closed)
        summary.nothing_due += sum(1 for close in closed if close.owes_nothing)
    return summary


_TO_INVOICE = (
    select(billing_closes)
    .where(billing_closes.c.status == CloseStatus.CLAIMED)
    .order_by(billing_closes.c.customer_id, billing_closes.c.period_end)
)


async def invoice_closes(
    engine: AsyncEngine,
    terms: BillingTerms,
    *,
    at: datetime,
    summary: RunSummary,
    chunk: int = CLOSE_CHUNK,
) -> None:
    """An invoice for every claimed close, `chunk` per transaction: the invoice and the close's
    `invoiced` mark commit together, so a crash leaves each close either invoiced or not."""
    while True:
        async with transaction(engine) as conn:
            rows = (await conn.execute(_TO_INVOICE.limit(chunk))).mappings().all()
            credits = await _credits(conn, [row["customer_id"] for row in rows])
            for row in rows:
                lines = close_lines(row, credit=credits.get(row["customer_id"], 0))
                used = sum(line.amount_micros for line in close_lines(row)) - sum(
                    line.amount_micros for line in lines
                )
                if used:
                    await _use_credit(conn, row["customer_id"], used, at)
                if not lines:
                    await _mark(conn, row, CloseStatus.NOTHING_DUE, None, at)
                    continue
                invoice = await issue_invoice(
                    conn,
                    customer=Customer(row["customer_kind"], row["customer_id"]),
                    lines=lines,
                    description=f"zoopay, period ending {row['period_end']:%Y-%m-%d}",
                    tax_rates=terms.tax_rates,
                    prefix=terms.invoice_prefix,
                    now=at,
                )
                await _mark(conn, row, CloseStatus.INVOICED, invoice.id, at)
                summary.invoiced += 1
        if len(rows) < chunk:
            return


async def _mark(
    conn: AsyncConnection, row: Any, status: str, invoice_id: str | None, at: datetime
) -> None:
    await conn.execute(
        update(billing_closes)
        .where(
            billing_closes.c.customer_id == row["customer_id"],
            billing_closes.c.period_end == row["period_end"],
        )
        .values(status=status, invoice_id=invoice_id, updated_at=at)
    )


_CREDITS = select(billing_credits.c.customer_id, billing_credits.c.credit_micros).order_by(
    billing_credits.c.customer_id
)


async def _credits(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, int]:
    rows = await select_where_one_of(conn, _CREDITS, billing_credits.c.customer_id, customer_ids)
    return {row["customer_id"]: int(row["credit_micros"]) for row in rows if row["credit_micros"]}


async def _use_credit(conn: AsyncConnection, customer_id: str, micros: int, at: datetime) -> None:
    await conn.execute(
        update(billing_credits)
        .where(billing_credits.c.customer_id == customer_id)
        .values(credit_micros=billing_credits.c.credit_micros - micros, updated_at=at)
    )


def close_lines(row: Any, *, credit: int = 0) -> list[NewLine]:
    """The fee of the period that begins (less a downgrade's credit: credit pays fees only, as
    a usage line's amount is what paying it settles of total_due), the usage of the one that
    ended."""
    lines = []
    start, end = row["period_start"], row["period_end"]
    fee = max(0, row["fee_micros"] - credit)
    usage = row["usage_micros"]
    if fee:
        tier = str(row["next_tier"]).capitalize()
        seats = f" x {row['seats']} seats" if row["seats"] > 1 else ""
        lines.append(
            plan_fee_line(
                tier_name=f"{tier}{seats}",
                period=f"from {end:%Y-%m-%d}",
                amount_micros=fee,
                reference=f"fee:{row['customer_id']}:{end:%Y-%m-%d}",
            )
        )
    if usage:
        lines.append(
            usage_line(
                period=f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
                amount_micros=usage,
                reference=f"usage:{row['customer_id']}:{end:%Y-%m-%d}",
            )
        )
    return lines


# Invoices billing issued (its closes, its early invoices) that are open.
_BILLED = and_(
    billing_closes.c.invoice_id == invoices.c.id,
    invoices.c.status == InvoiceStatus.OPEN.value,
)
_NEVER_TRIED = (
    select(invoices.c.id, invoices.c.customer_kind, invoices.c.customer_id)
    .select_from(invoices.join(billing_closes, _BILLED))
    .where(invoices.c.attempt_count == 0)
    .order_by(invoices.c.customer_id)
)
_FIRST_FAILURE = (
    select(
        invoices.c.id,
        invoices.c.customer_kind,
        invoices.c.customer_id,
        invoices.c.attempt_count,
        func.min(invoice_payment_attempts.c.created_at).label("first_failed_at"),
    )
    .select_from(
        invoices.join(billing_closes, _BILLED).join(
            invoice_payment_attempts, invoice_payment_attempts.c.invoice_id == invoices.c.id
        )
    )
    .where(invoices.c.attempt_count > 0)
    .group_by(
        invoices.c.id, invoices.c.customer_kind, invoices.c.customer_id, invoices.c.attempt_count
    )
    .order_by(invoices.c.customer_id)
)


async def charge_new_invoices(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    at: datetime,
    summary: RunSummary,
    concurrency: int = CHARGE_CONCURRENCY,
) -> None:
    async with reading(engine) as conn:
        rows = (await conn.execute(_NEVER_TRIED)).all()
    due = [(row[0], Customer(row[1], row[2])) for row in rows]
    await _charge_all(engine, processor, due, at=at, summary=summary, concurrency=concurrency)
    summary.charged += len(due)


async def dun(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    terms: BillingTerms,
    *,
    at: datetime,
    summary: RunSummary,
    concurrency: int = CHARGE_CONCURRENCY,
) -> None:
    """Retry each failed invoice whose retry day has come; give up on those whose last retry
    failed: uncollectible, and the customer delinquent until they pay."""
    retry = [due for due, done in await _failed(engine, terms, at=at) if not done]
    await _charge_all(engine, processor, retry, at=at, summary=summary, concurrency=concurrency)
    summary.retried += len(retry)
    # Those whose last retry failed (perhaps just now) are given up on.
    for (invoice_id, customer), done in await _failed(engine, terms, at=at):
        if not done:
            continue
        try:
            async with transaction(engine) as conn:
                await mark_uncollectible(conn, invoice_id=invoice_id, now=at)
                await set_delinquent(conn, customer=customer, delinquent=True, now=at)
        except Conflict:
            # The customer paid it since it was read, or is paying it now (a pending attempt):
            # nothing is given up on; a payment that fails leaves it for the next run.
            continue
        summary.uncollectible += 1


async def _failed(
    engine: AsyncEngine, terms: BillingTerms, *, at: datetime
) -> list[tuple[tuple[str, Customer], bool]]:
    """Open invoices of billing's that were tried and not paid, with whether their retries
    have run out; those neither out of retries nor due for one are left out."""
    async with reading(engine) as conn:
        rows = (await conn.execute(_FIRST_FAILURE)).all()
    found = []
    for invoice_id, kind, customer_id, attempts, first_failed_at in rows:
        due = (invoice_id, Customer(kind, customer_id))
        retries_made = attempts - 1
        if exhausted(terms.dunning_days, retries_made=retries_made):
            found.append((due, True))
        elif retry_due(
            terms.dunning_days, first_failed_at=first_failed_at, retries_made=retries_made, now=at
        ):
            found.append((due, False))
    return found


async def _charge_all(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    due: list[tuple[str, Customer]],
    *,
    at: datetime,
    summary: RunSummary,
    concurrency: int,
) -> None:
    """Charge each invoice, at most `concurrency` at once (a pool of workers, not a task per
    invoice: a million invoices are not a million coroutines)."""
    queue = iter(due)

    async def worker() -> None:
        for invoice_id, customer in queue:
            try:
                processor_id = await ensure_processor_customer(
                    engine, processor=processor, customer=customer, now=at
                )
                outcome = await charge_invoice(
                    engine,
                    processor,
                    invoice_id=invoice_id,
                    processor_customer_id=processor_id,
                    now=at,
                )
            except ServiceUnavailable:
                continue  # left pending: the next run reconciles it
            except Conflict:
                continue  # the customer is paying it now (a pending attempt): theirs decides
            if outcome.invoice.paid:
                summary.paid += 1
            elif outcome.attempt is not None and outcome.attempt.status != AttemptStatus.PENDING:
                summary.failed += 1

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


async def run_billing(
    engine: AsyncEngine,
    catalog: Catalog,
    processor: PaymentProcessor,
    terms: BillingTerms,
    *,
    at: datetime,
) -> RunSummary:
    summary = RunSummary()
    reconciled = await reconcile_pending_charges(engine, processor, now=at)
    summary.reconciled = len(reconciled.applied) + len(reconciled.abandoned)
    await close_periods(engine, catalog, at=at, summary=summary)
    async with transaction(engine) as conn:
        summary.early = await claim_early(conn, at=at, default_micros=DEFAULT_MICROS)
    await invoice_closes(engine, terms, at=at, summary=summary)
    await charge_new_invoices(engine, processor, at=at, summary=summary)
    await dun(engine, processor, terms, at=at, summary=summary)
    return summary
