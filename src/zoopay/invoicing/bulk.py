"""Invoicing many invoices at once: what zoopay.invoicing.service does for one, as a few
statements for a whole chunk, with the same rules (the service's own functions decide every
amount, posting and status; this module only batches the reads and writes).

- `issue_invoices`: `issue_invoice` for a chunk: the invoices, their lines, one range of
  numbers from the gap-free counter, the receivable postings, in the caller's transaction; in
  two steps (`write_invoices`, then `number_invoices` last), so that what concurrent chunks
  share (the counter, the shared journal accounts) is locked only at the end.
- `charge_invoices`: `charge_invoice` for a chunk, in three steps around one batch call to the
  processor (`PaymentProcessor.charge_many`): the attempts committed pending, the processor
  asked with each attempt's idempotency key, the answers applied in one transaction. A crash
  between the answer and its commit leaves the attempts pending, and
  `reconcile_pending_charges` resolves them by key, never charging again.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.db.bulk import insert_all, select_where_one_of, update_all
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import invoice_lines, invoice_payment_attempts, invoices
from zoopay.errors import ServiceUnavailable
from zoopay.invoicing.fee_credits import release_held_credits
from zoopay.invoicing.service import (
    CURRENCY,
    Attempt,
    AttemptStatus,
    ChargeOutcome,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NewLine,
    _attempt_of_row,
    _hold_stray_charge,
    _invoice_of_row,
    _line_of_row,
    _settle_charged,
    answered_values,
    attempt_row,
    charge_answer,
    deliveries,
    delivers,
    draft_row,
    failed_values,
    invoice_amounts,
    issued_posting,
    line_rows,
    lock_invoice,
    next_invoice_numbers,
    paid_posting,
    paid_values,
    resolve_awaiting_action,
)
from zoopay.journal.service import (
    Account,
    NewPosting,
    move_accounts,
    write_postings,
)
from zoopay.ledger.service import Balance, Bucket, Customer, lock_balances, post_batch
from zoopay.payments.service import NO_CONTACT, Contact
from zoopay.processors.base import (
    Charge,
    ChargeRequest,
    ChargeResult,
    PaymentProcessor,
    ProcessorError,
    ProcessorUnavailable,
)


@dataclass(frozen=True)
class NewInvoice:
    """What `issue_invoice` takes for one invoice."""

    customer: Customer
    lines: Sequence[NewLine]
    description: str
    contact: Contact = NO_CONTACT


async def issue_invoices(
    conn: AsyncConnection,
    *,
    drafts: Sequence[NewInvoice],
    tax_rates: Mapping[str, Decimal],
    prefix: str,
    now: datetime,
) -> list[Invoice]:
    """`issue_invoice` for each of `drafts`, in the caller's transaction: numbered in their
    order from one range of the counter; those of 0 are paid at once. Every draft is checked
    before anything is written (BadRequest, as `issue_invoice`)."""
    written = await write_invoices(conn, drafts=drafts, tax_rates=tax_rates, now=now)
    return await number_invoices(conn, written, prefix=prefix, now=now)


@dataclass(frozen=True)
class WrittenInvoices:
    """Invoices written open but not yet numbered (`write_invoices`), and what their postings
    are still to move on the shared accounts."""

    invoices: list[Invoice]
    shared: dict[Account, int]


async def write_invoices(
    conn: AsyncConnection,
    *,
    drafts: Sequence[NewInvoice],
    tax_rates: Mapping[str, Decimal],
    now: datetime,
) -> WrittenInvoices:
    """`issue_invoices` but for what every chunk of a billing run shares (the shared accounts'
    balances and the number counter, locked until the commit): the invoices, their lines, their
    postings. The caller calls `number_invoices` last in the same transaction, so that
    concurrent chunks hold those locks only for their last statements."""
    amounts = [
        invoice_amounts(draft.lines, tax_rates=tax_rates, country=draft.contact.country)
        for draft in drafts
    ]
    rows, lines = [], []
    for draft, amount in zip(drafts, amounts, strict=True):
        invoice_id = str(uuid.uuid4())
        row = draft_row(
            invoice_id,
            customer=draft.customer,
            amounts=amount,
            description=draft.description,
            now=now,
            contact=draft.contact,
        )
        # Finalized at once, as `finalize_invoice` does to the draft in the same transaction.
        row |= {
            "status": InvoiceStatus.OPEN.value,
            "finalized_at": now,
            "charge_id": None,
            "paid_at": None,
            "closed_at": None,
        }
        rows.append(row)
        lines.append(line_rows(invoice_id, amount.lines))
    opened = [
        _invoice_of_row(row, [_line_of_row(line) for line in its_lines])
        for row, its_lines in zip(rows, lines, strict=True)
    ]
    await insert_all(conn, invoices, rows)
    await insert_all(conn, invoice_lines, [line for its_lines in lines for line in its_lines])
    postings = [issued_posting(invoice) for invoice in opened]
    return WrittenInvoices(opened, await write_postings(conn, postings=postings, now=now))


async def number_invoices(
    conn: AsyncConnection, written: WrittenInvoices, *, prefix: str, now: datetime
) -> list[Invoice]:
    """The shared accounts moved, those of 0 paid, and the invoices numbered in their order
    from one range of the counter (in `journal.lock_order`: the counter last, after what
    paying locks)."""
    if not written.invoices:
        return []
    await move_accounts(conn, totals=written.shared, now=now)
    free = {
        invoice.id: invoice
        for invoice in await settle_invoices(
            conn, payments=[(i, None) for i in written.invoices if i.total_micros == 0], now=now
        )
    }
    opened = [free.get(invoice.id, invoice) for invoice in written.invoices]
    numbers = await next_invoice_numbers(conn, prefix=prefix, count=len(opened))
    await update_all(
        conn, invoices, [{"id": i.id, "number": n} for i, n in zip(opened, numbers, strict=True)]
    )
    return [replace(i, number=n) for i, n in zip(opened, numbers, strict=True)]


_LOCK_INVOICES = invoices.select().order_by(invoices.c.id).with_for_update()
_LINES = invoice_lines.select().order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)


async def lock_invoices(
    conn: AsyncConnection, *, invoice_ids: Sequence[str], lines: bool = True
) -> dict[str, Invoice]:
    """`lock_invoice` for many, locked in id order (so that two batches never deadlock);
    without their lines if `lines` is false (for what needs only the amounts)."""
    ids = sorted(set(invoice_ids))
    rows = await select_where_one_of(conn, _LOCK_INVOICES, invoices.c.id, ids)
    by_invoice: dict[str, list[InvoiceLine]] = {row["id"]: [] for row in rows}
    found = (
        await select_where_one_of(conn, _LINES, invoice_lines.c.invoice_id, ids) if lines else []
    )
    for line in found:
        by_invoice[line["invoice_id"]].append(_line_of_row(line))
    return {row["id"]: _invoice_of_row(row, by_invoice[row["id"]]) for row in rows}


async def settle_invoices(
    conn: AsyncConnection,
    *,
    payments: Sequence[tuple[Invoice, Charge | None]],
    now: datetime,
) -> list[Invoice]:
    """`settle_invoice` for many open invoices, read under their locks (`lock_invoices`):
    paid, the cash posted, credits delivered and usage settled; answers them paid."""
    if not payments:
        return []
    paid = [(invoice, paid_values(invoice, charge, now)) for invoice, charge in payments]
    await update_all(conn, invoices, [{"id": invoice.id, **values} for invoice, values in paid])
    postings = [paid_posting(invoice, charge) for invoice, charge in payments]
    # Every customer's balance locked, whether or not their invoice delivers: a credit held
    # against it is released under it (invoicing.fee_credits).
    balances = await lock_balances(conn, customers={invoice.customer for invoice, _ in payments})
    await _deliver_all(conn, [invoice for invoice, _ in payments], balances, postings, now)
    await release_held_credits(conn, invoice_ids=[invoice.id for invoice, _ in payments], now=now)
    return [replace(invoice, **_fields(values)) for invoice, values in paid]


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    return {**values, "status": InvoiceStatus(values["status"])}


async def _deliver_all(
    conn: AsyncConnection,
    paid: Sequence[Invoice],
    balances: Mapping[Customer, Balance],
    postings: list[NewPosting],
    now: datetime,
) -> None:
    """Each paid invoice's deliveries (`invoicing.service.deliveries`), in their order, on
    `balances` (locked); the journal postings written with `postings`."""
    delivering = [invoice for invoice in paid if delivers(invoice)]
    customers = {invoice.customer for invoice in delivering}
    due = {customer: balances[customer].total_due_micros for customer in customers}
    work: dict[Customer, list[Any]] = {customer: [] for customer in customers}
    for invoice in delivering:
        its_postings, movements = deliveries(invoice, due[invoice.customer])
        postings.extend(its_postings)
        work[invoice.customer].extend(movements)
        due[invoice.customer] += sum(deltas.get(Bucket.TOTAL_DUE, 0) for deltas, _ in movements)
    shared = await write_postings(conn, postings=postings, now=now)
    await post_batch(
        conn,
        work=[(balances[c], work[c]) for c in sorted(customers, key=lambda c: c.id)],
        now=now,
    )
    # Last: the shared accounts (cash, revenue) are what concurrent chunks wait for.
    await move_accounts(conn, totals=shared, now=now)


# ------------------------------------------------------------------------------- charging


@dataclass(frozen=True)
class Due:
    """An open invoice to charge, and the customer's id at the processor; or, where the
    processor refused to make the customer, that refusal: the attempt fails with it, uncharged,
    and dunning retries it (making the customer again) as any failed charge."""

    invoice_id: str
    processor_customer_id: str
    refused: ProcessorError | None = None


# Test-only: called right after the processor answered a batch and before the answers are
# committed, so that a test can kill the process exactly there.
AfterAnswers = Callable[[list[ChargeResult]], None]


async def charge_invoices(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    due: Sequence[Due],
    now: datetime,
    after_answers: AfterAnswers | None = None,
) -> list[ChargeOutcome]:
    """`charge_invoice` for a batch of open invoices, in its own transactions (never call it
    inside one). Invoices no longer open, or with an attempt still pending (the reconcile
    step's), are left alone. A processor that does not answer leaves the attempts pending."""
    due = await _without_waiting_charges(engine, processor, due=due, now=now)
    async with transaction(engine) as conn:
        attempts = await start_attempts(conn, due=due, now=now)
    refused = {d.invoice_id: d.refused for d in due if d.refused is not None}
    # An attempt whose customer the processor refused is answered by that refusal, uncharged.
    answered: list[tuple[Attempt, ChargeResult]] = [
        (attempt, refused[attempt.invoice_id])
        for attempt, _ in attempts
        if attempt.invoice_id in refused
    ]
    charging = [(attempt, n) for attempt, n in attempts if attempt.invoice_id not in refused]
    answered += await _charge_batch(processor, charging, after_answers)
    if not answered:
        return []
    async with transaction(engine) as conn:
        return await apply_results(conn, results=answered, now=now)


async def _charge_batch(
    processor: PaymentProcessor,
    attempts: Sequence[tuple[Attempt, str | None]],
    after_answers: AfterAnswers | None,
) -> list[tuple[Attempt, ChargeResult]]:
    """One `charge_many` for the attempts (with their invoices' numbers), each paired with its
    answer; none when there is nothing to charge or the processor does not answer (the
    attempts stay pending: the reconcile step asks again)."""
    if not attempts:
        return []
    requests = [
        ChargeRequest(
            customer_id=attempt.processor_customer_id,
            amount_cents=attempt.amount_cents,
            currency=CURRENCY,
            idempotency_key=attempt.idempotency_key,
            description=f"Invoice {number}",
            payment_method_id=attempt.payment_method_id,
        )
        for attempt, number in attempts
    ]
    try:
        results = await processor.charge_many(requests)
    except ProcessorUnavailable:
        return []
    if after_answers is not None:
        after_answers(results)
    return [(attempt, result) for (attempt, _), result in zip(attempts, results, strict=True)]


# Literal text: db.bulk compiles this once and sends only the invoice ids as parameters.
_WAITING = invoice_payment_attempts.select().where(
    text("invoice_payment_attempts.status = 'requires_action'")
)


async def _without_waiting_charges(
    engine: AsyncEngine, processor: PaymentProcessor, *, due: Sequence[Due], now: datetime
) -> list[Due]:
    """`due`, each invoice's earlier charges still waiting for the customer resolved first
    (`resolve_awaiting_action`, as `charge_invoice` does), so that a waiting charge can never
    succeed beside the new one; an invoice whose waiting charge the processor could not settle
    is left for the next run."""
    async with reading(engine) as conn:
        rows = await select_where_one_of(
            conn, _WAITING, invoice_payment_attempts.c.invoice_id, sorted(d.invoice_id for d in due)
        )
    unsettled = set()
    for invoice_id in sorted({row["invoice_id"] for row in rows}):
        try:
            await resolve_awaiting_action(engine, processor, invoice_id=invoice_id, now=now)
        except ServiceUnavailable:
            unsettled.add(invoice_id)
    return [d for d in due if d.invoice_id not in unsettled]


_PENDING = invoice_payment_attempts.select().where(
    text("invoice_payment_attempts.status = 'pending'")
)


async def start_attempts(
    conn: AsyncConnection, *, due: Sequence[Due], now: datetime
) -> list[tuple[Attempt, str | None]]:
    """The next attempt of each open invoice of `due` with none pending, recorded pending, with
    the invoice's number; in the caller's transaction (commit it before charging)."""
    locked = await lock_invoices(conn, invoice_ids=[d.invoice_id for d in due], lines=False)
    ids = sorted(locked)
    busy = {
        row["invoice_id"]
        for row in await select_where_one_of(
            conn, _PENDING, invoice_payment_attempts.c.invoice_id, ids
        )
    }
    rows, numbers = [], []
    for d in due:
        invoice = locked.get(d.invoice_id)
        if invoice is None or invoice.status != InvoiceStatus.OPEN or invoice.id in busy:
            continue
        busy.add(invoice.id)  # the same invoice twice in `due`: one attempt
        rows.append(attempt_row(invoice, d.processor_customer_id, None, now=now))
        numbers.append(invoice.number)
    await insert_all(conn, invoice_payment_attempts, rows)
    await update_all(
        conn,
        invoices,
        [{"id": r["invoice_id"], "attempt_count": r["attempt"], "updated_at": now} for r in rows],
    )
    return [(_attempt_of_row(row), number) for row, number in zip(rows, numbers, strict=True)]


_ATTEMPTS = invoice_payment_attempts.select().order_by(invoice_payment_attempts.c.id)


async def apply_results(
    conn: AsyncConnection,
    *,
    results: Sequence[tuple[Attempt, ChargeResult]],
    now: datetime,
) -> list[ChargeOutcome]:
    """The processor's answers to a batch of attempts, applied once (`charge_answer`'s rule,
    as `apply_charge`): successes settle their invoices, refusals fail their attempts, and
    attempts without an answer stay pending. In the caller's transaction."""
    locked = await lock_invoices(conn, invoice_ids=[a.invoice_id for a, _ in results])
    current = {
        row["id"]: _attempt_of_row(row)
        for row in await select_where_one_of(
            conn, _ATTEMPTS, invoice_payment_attempts.c.id, sorted(a.id for a, _ in results)
        )
    }
    changes: list[tuple[Attempt, dict[str, Any]]] = []
    settling: list[tuple[Invoice, Charge | None]] = []
    stray: list[tuple[Invoice, Charge]] = []
    for attempt, result in results:
        attempt = current[attempt.id]
        invoice = locked[attempt.invoice_id]
        if isinstance(result, ProcessorError) and attempt.status == AttemptStatus.PENDING:
            changes.append((attempt, failed_values(result.code, result.message, now)))
        elif isinstance(result, Charge):
            answer = charge_answer(attempt, invoice, result)
            if answer is not None:
                changes.append((attempt, answered_values(result, answer, now)))
                if answer.settles:
                    settling.append((invoice, result))
                elif answer.status == AttemptStatus.REFUND_DUE:
                    stray.append((invoice, result))
    await update_all(
        conn, invoice_payment_attempts, [_attempt_change(a, values) for a, values in changes]
    )
    for invoice, taken in stray:
        await _hold_stray_charge(conn, invoice, taken, now=now)
    # A written-off invoice paid after all (its attempt outlived dunning) goes the one-invoice
    # way, reinstated first (`_settle_charged`); the open ones are settled together.
    written_off = [(i, c) for i, c in settling if i.status != InvoiceStatus.OPEN]
    for invoice, charge in written_off:
        if charge is not None:
            await _settle_charged(conn, invoice, charge, now=now)
    reopened = {i.id: await lock_invoice(conn, invoice_id=i.id) for i, _ in written_off}
    settling = [(i, c) for i, c in settling if i.status == InvoiceStatus.OPEN]
    paid = {
        invoice.id: invoice for invoice in await settle_invoices(conn, payments=settling, now=now)
    }
    paid |= reopened
    changed = {attempt.id: _changed(attempt, values) for attempt, values in changes}
    return [
        ChargeOutcome(
            paid.get(attempt.invoice_id, locked[attempt.invoice_id]),
            changed.get(attempt.id, current[attempt.id]),
        )
        for attempt, _ in results
    ]


def _attempt_change(attempt: Attempt, values: Mapping[str, Any]) -> dict[str, Any]:
    """One shape for every changed attempt (a refusal names no charge)."""
    return {"id": attempt.id, "charge_id": None, **values}


def _changed(attempt: Attempt, values: Mapping[str, Any]) -> Attempt:
    fields = {k: v for k, v in values.items() if k != "updated_at"}
    return replace(attempt, **{**fields, "status": AttemptStatus(values["status"])})
