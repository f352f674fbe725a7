"""`zoopay billing run`: close every ended period, invoice it, charge it, dun what failed.

The run is a sequence of resumable steps; each records what it did in its own transactions,
and a rerun (a second run, or one after a crash) picks up only what is left:
1. reconcile charge attempts left pending (a crash between the processor's answer and the
   commit): the processor is asked by idempotency key, never charged again;
2. close: claim every ended period, a chunk of customers per transaction (billing.close);
3. invoice: one invoice per claimed close, numbered, a chunk per transaction, set-based;
4. charge every open invoice never tried, a batch of `CHARGE_CHUNK` at a time;
5. dun: retry failed invoices whose retry day came (`ZOOPAY_DUNNING_DAYS`); when the last retry
   failed, the invoice is uncollectible and the customer delinquent.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.billing.close import CloseStatus, claim, claim_early, customers_to_close
from zoopay.billing.dunning import exhausted, retry_due
from zoopay.billing.upgrades import repair_plan_change_payments
from zoopay.catalog.service import Catalog
from zoopay.db.bulk import select_where_one_of, update_all
from zoopay.db.engine import is_sqlite, reading, transaction
from zoopay.db.tables import billing_closes, billing_credits, invoice_payment_attempts, invoices
from zoopay.errors import Conflict
from zoopay.invoicing.bulk import (
    Due,
    NewInvoice,
    charge_invoices,
    number_invoices,
    write_invoices,
)
from zoopay.invoicing.service import (
    AttemptStatus,
    InvoiceStatus,
    NewLine,
    mark_uncollectible,
    plan_fee_line,
    reconcile_pending_charges,
    usage_line,
)
from zoopay.ledger.service import Customer
from zoopay.payments.service import billing_contacts, ensure_processor_customers, set_delinquent
from zoopay.payments.thresholds import DEFAULT_MICROS
from zoopay.processors.base import CustomerResult, PaymentProcessor, ProcessorError

# Customers per claiming or invoicing transaction: short locks, few round trips per customer.
CLOSE_CHUNK = 1000
# Invoices per charging batch: one processor batch call (charge_many) and two transactions.
CHARGE_CHUNK = 1000
# Chunks under way at once on PostgreSQL (SQLite has one writer: one at a time there).
CHUNK_WORKERS = 2
T = TypeVar("T")


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
    # Of those charged or retried, invoices left untried: no answer for their customer.
    deferred: int = 0

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

    async def close(part: Sequence[Customer]) -> None:
        async with transaction(engine) as conn:
            closed = await claim(conn, catalog, part, at=at)
        summary.closed += len(closed)
        summary.nothing_due += sum(1 for close in closed if close.owes_nothing)

    chunks = [customers[first : first + chunk] for first in range(0, len(customers), chunk)]
    await each_of(chunks, close, workers=1 if is_sqlite(engine) else CHUNK_WORKERS)
    return summary


_CLAIMED = (
    select(billing_closes.c.customer_id)
    .where(billing_closes.c.status == CloseStatus.CLAIMED)
    .group_by(billing_closes.c.customer_id)
    .order_by(billing_closes.c.customer_id)
)
# Locked, and claimed still when the lock is had (literal text: db.bulk compiles it once and
# sends only the customer ids as parameters).
_TO_INVOICE = (
    select(billing_closes)
    .where(text("billing_closes.status = 'claimed'"))
    .order_by(billing_closes.c.customer_id, billing_closes.c.period_end)
    .with_for_update()
)


async def invoice_closes(
    engine: AsyncEngine,
    terms: BillingTerms,
    *,
    at: datetime,
    summary: RunSummary,
    chunk: int = CLOSE_CHUNK,
) -> None:
    """An invoice for every claimed close, the closes of `chunk` customers per transaction
    (two at once on PostgreSQL): the invoices and the closes' `invoiced` marks commit
    together, so a crash leaves each close either invoiced or not. The closes are locked: a
    concurrent run waits for them, then finds them invoiced."""
    async with reading(engine) as conn:
        customers = list((await conn.execute(_CLAIMED)).scalars())

    async def invoice(part: list[str]) -> None:
        async with transaction(engine) as conn:
            rows = await select_where_one_of(conn, _TO_INVOICE, billing_closes.c.customer_id, part)
            issued = await invoice_chunk(conn, terms, rows, at=at)
        # Counted once committed, and not as `+= await ...`: the other worker counts too.
        summary.invoiced += issued

    chunks = [customers[first : first + chunk] for first in range(0, len(customers), chunk)]
    await each_of(chunks, invoice, workers=1 if is_sqlite(engine) else CHUNK_WORKERS)


async def invoice_chunk(
    conn: AsyncConnection, terms: BillingTerms, rows: Sequence[Mapping[Any, Any]], *, at: datetime
) -> int:
    """Invoice claimed closes (`billing_closes` rows) in the caller's transaction, set-based;
    answers how many invoices were issued (a close with nothing left to bill is marked
    nothing_due)."""
    customers = [Customer(row["customer_kind"], row["customer_id"]) for row in rows]
    credits = await _credits(conn, [c.id for c in customers])
    contacts = await billing_contacts(conn, customers=customers)
    used: dict[str, int] = {}
    drafts, billed, nothing = [], [], []
    for row, customer in zip(rows, customers, strict=True):
        left = credits.get(customer.id, 0) - used.get(customer.id, 0)
        lines = close_lines(row, credit=left)
        if left:
            use = sum(line.amount_micros for line in close_lines(row)) - sum(
                line.amount_micros for line in lines
            )
            used[customer.id] = used.get(customer.id, 0) + use
        if not lines:
            nothing.append(row)
            continue
        drafts.append(
            NewInvoice(
                customer=customer,
                lines=lines,
                description=f"zoopay, period ending {row['period_end']:%Y-%m-%d}",
                contact=contacts[customer],
            )
        )
        billed.append(row)
    written = await write_invoices(conn, drafts=drafts, tax_rates=terms.tax_rates, now=at)
    await update_all(
        conn,
        billing_credits,
        [
            {"customer_id": c, "credit_micros": credits[c] - micros, "updated_at": at}
            for c, micros in sorted(used.items())
            if micros
        ],
        key="customer_id",
    )
    marks = [_mark(row, CloseStatus.NOTHING_DUE, None, at) for row in nothing]
    marks += [
        _mark(row, CloseStatus.INVOICED, invoice.id, at)
        for row, invoice in zip(billed, written.invoices, strict=True)
    ]
    await update_all(conn, billing_closes, marks, key=("customer_id", "period_end"))
    # Last, what every chunk shares and locks until its commit: the shared accounts, the counter.
    issued = await number_invoices(conn, written, prefix=terms.invoice_prefix, now=at)
    return len(issued)


def _mark(
    row: Mapping[str, Any], status: str, invoice_id: str | None, at: datetime
) -> dict[str, Any]:
    return {
        "customer_id": row["customer_id"],
        "period_end": row["period_end"],
        "status": status,
        "invoice_id": invoice_id,
        "updated_at": at,
    }


# Locked: what a chunk uses of them is taken off in the same transaction.
_CREDITS = (
    select(billing_credits.c.customer_id, billing_credits.c.credit_micros)
    .order_by(billing_credits.c.customer_id)
    .with_for_update()
)


async def _credits(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, int]:
    rows = await select_where_one_of(conn, _CREDITS, billing_credits.c.customer_id, customer_ids)
    return {row["customer_id"]: int(row["credit_micros"]) for row in rows if row["credit_micros"]}


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
) -> None:
    async with reading(engine) as conn:
        rows = (await conn.execute(_NEVER_TRIED)).all()
    due = [(row[0], Customer(row[1], row[2])) for row in rows]
    await _charge_all(engine, processor, due, at=at, summary=summary)
    summary.charged += len(due)


async def dun(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    terms: BillingTerms,
    *,
    at: datetime,
    summary: RunSummary,
) -> None:
    """Retry each failed invoice whose retry day has come; give up on those whose last retry
    failed: uncollectible, and the customer delinquent until they pay."""
    retry = [due for due, done in await _failed(engine, terms, at=at) if not done]
    await _charge_all(engine, processor, retry, at=at, summary=summary)
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
    chunk: int = CHARGE_CHUNK,
) -> None:
    """Charge each invoice, a chunk at a time: the chunk's processor customers looked up (and
    made where missing), then one batch of attempts, charges and answers
    (invoicing.bulk.charge_invoices). On PostgreSQL two chunks are under way at once, so that
    one's statements run while the other's rows are built."""
    chunks = [due[first : first + chunk] for first in range(0, len(due), chunk)]

    async def charge(part: list[tuple[str, Customer]]) -> None:
        ids = await ensure_processor_customers(
            engine, processor=processor, customers=[c for _, c in part], now=at
        )
        due = [_due(invoice_id, ids[c]) for invoice_id, c in part]
        # A customer the processor did not answer for is left for the next run, never tried.
        summary.deferred += sum(1 for d in due if d is None)
        outcomes = await charge_invoices(
            engine, processor, due=[d for d in due if d is not None], now=at
        )
        for outcome in outcomes:
            if outcome.invoice.paid:
                summary.paid += 1
            elif outcome.attempt is not None and outcome.attempt.status != AttemptStatus.PENDING:
                summary.failed += 1

    await each_of(chunks, charge, workers=1 if is_sqlite(engine) else CHUNK_WORKERS)


def _due(invoice_id: str, processor_customer: CustomerResult) -> Due | None:
    """What charging an invoice takes, given what making its customer at the processor came
    to: the id, a refusal (the attempt fails with it, uncharged, and dunning retries), or no
    answer (None: nothing is recorded, so the next run tries again)."""
    if isinstance(processor_customer, str):
        return Due(invoice_id, processor_customer)
    if isinstance(processor_customer, ProcessorError):
        return Due(invoice_id, "", refused=processor_customer)
    return None


async def each_of(
    items: Sequence[T], work: Callable[[T], Awaitable[None]], *, workers: int
) -> None:
    """`work` on every item, in order, at most `workers` at once. After a failure no worker
    takes another item; those under way finish theirs (never cut between a charge batch's
    steps), then the first failure is raised: the run is resumable, a rerun does the rest."""
    queue = iter(items)
    failures: list[Exception] = []

    async def worker() -> None:
        for item in queue:
            try:
                await work(item)
            except Exception as exc:
                failures.append(exc)
            if failures:
                return

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    if failures:
        raise failures[0]


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
    summary.reconciled += await repair_plan_change_payments(engine, processor, now=at)
    await close_periods(engine, catalog, at=at, summary=summary)
    async with transaction(engine) as conn:
        summary.early = await claim_early(conn, at=at, default_micros=DEFAULT_MICROS)
    await invoice_closes(engine, terms, at=at, summary=summary)
    await charge_new_invoices(engine, processor, at=at, summary=summary)
    await dun(engine, processor, terms, at=at, summary=summary)
    return summary
