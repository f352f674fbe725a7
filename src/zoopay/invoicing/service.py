"""Invoices: issuing, numbering, charging through the processor, settling, refunds.

Money rules (decided here, stated in the README):
- Lines are micro-dollars (usage is priced to the micro); the processor takes whole cents. Tax
  is `subtotal x rate`, rounded half-up to the micro-dollar; then subtotal + tax is rounded
  half-up to whole cents and the difference becomes a line of its own (kind `rounding`), so that
  the lines sum to the subtotal, subtotal + tax is the total, and the total is what is charged.
  The journal posts the rounding line to the `rounding` account.
- What a line does when its invoice is paid: `credits` adds its amount to the stable bucket;
  `usage` settles its amount of `total_due` (at most what is due); `plan_fee` and `rounding`
  only move money.

Charging is two transactions around the processor call, so that a crash between them never
charges twice and never loses a paid charge: an attempt row (status pending, with the
idempotency key `invoice-{id}-attempt-{n}`) is committed before the processor is called, and
the processor's answer is applied in a second transaction. `reconcile_pending_charges` finds
attempts left pending and asks the processor what happened to them.

An uncollectible invoice (dunning gave up) can still be paid: the customer's way out. Its
charge first reverses the write-off (receivable back from bad debt), then settles it as any
paid invoice; once no uncollectible invoice of theirs is left, the customer is no longer
delinquent. A void invoice is never charged.

A charge that needs the customer (`requires_action`, 3-D Secure) can still succeed later, when
they authenticate it; its attempt stays `requires_action` and takes the processor's later answer
(Stripe's webhook, or the processor asked again) through `apply_charge`, like a pending one.
The rules that keep it from paying an invoice twice:
- before a new attempt, every earlier one that waits for the customer is canceled at the
  processor (`resolve_awaiting_action`): a canceled charge can never succeed; one the customer
  completed first is applied instead, and then there is no new attempt;
- a success for an invoice that can no longer be paid (paid by another charge, voided) never
  settles it (an uncollectible one it pays, as any charge does): the attempt becomes
  `refund_due`, the money is posted as owed back (journal `refund_due:<customer>`), and
  `refund_stray_charges` refunds it in full through the processor with a key derived from the
  attempt's (`stray-refund-<attempt key>`), once.
"""

import enum
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.db.engine import is_unavailable, reading, transaction
from zoopay.db.tables import (
    invoice_counters,
    invoice_lines,
    invoice_payment_attempts,
    invoice_refunds,
    invoices,
)
from zoopay.errors import BadRequest, Conflict, NotFound, PaymentRequired, ServiceUnavailable
from zoopay.invoicing.fee_credits import release_held_credits
from zoopay.journal.service import (
    Account,
    AccountKind,
    NewPosting,
    PostingKind,
    post_journal,
    post_posting,
)
from zoopay.ledger.service import (
    Balance,
    Bucket,
    Customer,
    Posting,
    Reason,
    lock_balance,
    post,
    post_batch,
)
from zoopay.money import MAX_BALANCE_MICROS, format_micros
from zoopay.payments.service import NO_CONTACT, Contact, lock_payment_customer, set_delinquent
from zoopay.processors.base import (
    Charge,
    ChargeRequest,
    ChargeStatus,
    PaymentProcessor,
    ProcessorError,
    ProcessorUnavailable,
)
from zoopay.records import record_of

logger = logging.getLogger(__name__)

MICROS_PER_CENT = 10_000
CURRENCY = "usd"
ZERO = Decimal(0)


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class LineKind(enum.StrEnum):
    PLAN_FEE = "plan_fee"
    USAGE = "usage"
    CREDITS = "credits"
    ROUNDING = "rounding"


class AttemptStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"
    # Reconcile found that the processor never received it: nothing was taken.
    ABANDONED = "abandoned"
    # Waited for the customer and was canceled before they acted: nothing was taken.
    CANCELED = "canceled"
    # Succeeded at the processor for an invoice that no longer needed it: to be refunded.
    REFUND_DUE = "refund_due"
    # A `refund_due` attempt's money, refunded in full.
    REFUNDED = "refunded"


# Attempts whose answer may still change: never learned (pending, abandoned), or waiting for
# the customer (requires_action). `apply_charge` applies a processor's answer to these only.
UNSETTLED_ATTEMPTS = frozenset(
    {AttemptStatus.PENDING, AttemptStatus.ABANDONED, AttemptStatus.REQUIRES_ACTION}
)


def takes_answer(attempt: AttemptStatus, charge: ChargeStatus) -> bool:
    """Whether an attempt takes the processor's answer: an unsettled one any answer; one zoopay
    took for canceled a success all the same (money taken is never ignored: it settles the
    invoice, or is refunded)."""
    if attempt == AttemptStatus.CANCELED:
        return charge == ChargeStatus.SUCCEEDED
    return attempt in UNSETTLED_ATTEMPTS


class RefundStatus(enum.StrEnum):
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class NewLine:
    """A line to invoice. `amount_micros` is never negative; `reference` says what it pays for
    (a subscription id and period, a usage period), for the caller's own records."""

    kind: LineKind
    description: str
    amount_micros: int
    reference: str | None = None


def plan_fee_line(*, tier_name: str, period: str, amount_micros: int, reference: str) -> NewLine:
    """The fee of a plan for one period, e.g. ("Pro", "2026-01-15 to 2026-02-15")."""
    return NewLine(LineKind.PLAN_FEE, f"{tier_name} plan, {period}", amount_micros, reference)


def usage_line(*, period: str, amount_micros: int, reference: str | None = None) -> NewLine:
    """Usage beyond the credits: paying it settles this much of the customer's total_due."""
    return NewLine(LineKind.USAGE, f"API usage beyond credits, {period}", amount_micros, reference)


def credits_line(*, amount_micros: int) -> NewLine:
    """Stable API credits bought: paying it adds this much to the stable bucket."""
    return NewLine(LineKind.CREDITS, "Prepaid API credits", amount_micros)


@dataclass(frozen=True)
class InvoiceLine:
    id: str
    kind: LineKind
    description: str
    amount_micros: int
    reference: str | None


@dataclass(frozen=True)
class Invoice:
    id: str
    customer: Customer
    number: str | None
    status: InvoiceStatus
    description: str
    customer_email: str | None
    customer_name: str | None
    country: str | None
    tax_rate: Decimal
    subtotal_micros: int
    tax_micros: int
    total_micros: int
    amount_paid_micros: int
    amount_refunded_micros: int
    attempt_count: int
    charge_id: str | None
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    lines: tuple[InvoiceLine, ...] = field(default=())

    @property
    def amount_due_micros(self) -> int:
        """What the customer is asked to pay: the total of an invoice still to be paid."""
        if self.status in (InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE):
            return 0
        return self.total_micros

    @property
    def amount_remaining_micros(self) -> int:
        if self.status not in (InvoiceStatus.DRAFT, InvoiceStatus.OPEN):
            return 0
        return self.total_micros - self.amount_paid_micros

    @property
    def paid(self) -> bool:
        return self.status == InvoiceStatus.PAID

    @property
    def refund_status(self) -> RefundStatus | None:
        if self.amount_refunded_micros == 0:
            return None
        if self.amount_refunded_micros >= self.amount_paid_micros:
            return RefundStatus.REFUNDED
        return RefundStatus.PARTIALLY_REFUNDED

    def total_of(self, kind: LineKind) -> int:
        return sum(line.amount_micros for line in self.lines if line.kind == kind)


def round_half_up(micros: Decimal | int, unit: int) -> int:
    """`micros` to a whole number of `unit`s (1 = micro-dollars, 10,000 = cents), half up."""
    units = (Decimal(micros) / unit).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(units) * unit


def tax_rate_for(tax_rates: Mapping[str, Decimal], country: str | None) -> Decimal:
    """The configured rate of the customer's country; no country or no rate: 0."""
    if country is None:
        return ZERO
    return tax_rates.get(country.upper(), ZERO)


# ---------------------------------------------------------------------------------- issuing


@dataclass(frozen=True)
class Amounts:
    """What an invoice's lines come to: the lines with a rounding line if one is needed, the
    tax at the customer's rate and the total, in whole cents."""

    rate: Decimal
    lines: tuple[NewLine, ...]
    tax_micros: int
    total_micros: int

    @property
    def subtotal_micros(self) -> int:
        return self.total_micros - self.tax_micros


def invoice_amounts(
    lines: Sequence[NewLine], *, tax_rates: Mapping[str, Decimal], country: str | None
) -> Amounts:
    """Check the lines (BadRequest) and compute the tax, the rounding and the total."""
    if not lines:
        raise BadRequest("an invoice needs at least one line")
    for line in lines:
        if line.kind == LineKind.ROUNDING:
            raise BadRequest("rounding lines are computed, not given")
        if line.amount_micros < 0 or line.amount_micros > MAX_BALANCE_MICROS // 1000:
            raise BadRequest(f"a line amount must be between 0 and a billion USD: {line}")
        if not line.description.strip():
            raise BadRequest("a line needs a description")
    rate = tax_rate_for(tax_rates, country)
    given = sum(line.amount_micros for line in lines)
    tax = round_half_up(Decimal(given) * rate, 1)
    total = round_half_up(given + tax, MICROS_PER_CENT)
    all_lines = list(lines)
    if total != given + tax:
        all_lines.append(NewLine(LineKind.ROUNDING, "Rounding to whole cents", total - given - tax))
    return Amounts(rate, tuple(all_lines), tax, total)


def draft_row(
    invoice_id: str,
    *,
    customer: Customer,
    amounts: Amounts,
    description: str,
    now: datetime,
    contact: Contact,
) -> dict[str, Any]:
    """The `invoices` row of a new draft."""
    return {
        "id": invoice_id,
        "customer_kind": customer.kind,
        "customer_id": customer.id,
        "number": None,
        "status": InvoiceStatus.DRAFT.value,
        "description": description[:500],
        "customer_email": contact.email,
        "customer_name": contact.name,
        "country": contact.country.upper() if contact.country else None,
        "tax_rate": str(amounts.rate),
        "subtotal_micros": amounts.subtotal_micros,
        "tax_micros": amounts.tax_micros,
        "total_micros": amounts.total_micros,
        "amount_paid_micros": 0,
        "amount_refunded_micros": 0,
        "attempt_count": 0,
        "created_at": now,
        "updated_at": now,
    }


def line_rows(invoice_id: str, lines: Sequence[NewLine]) -> list[dict[str, Any]]:
    """The `invoice_lines` rows of an invoice's lines, in order."""
    return [
        {
            "id": str(uuid.uuid4()),
            "invoice_id": invoice_id,
            "position": position,
            "kind": line.kind.value,
            "description": line.description[:500],
            "amount_micros": line.amount_micros,
            "reference": line.reference,
        }
        for position, line in enumerate(lines)
    ]


async def create_draft_invoice(
    conn: AsyncConnection,
    *,
    customer: Customer,
    lines: Sequence[NewLine],
    description: str,
    tax_rates: Mapping[str, Decimal],
    now: datetime,
    contact: Contact = NO_CONTACT,
) -> Invoice:
    """A draft: amounts computed (tax, rounding to cents), no number yet, nothing posted."""
    amounts = invoice_amounts(lines, tax_rates=tax_rates, country=contact.country)
    invoice_id = str(uuid.uuid4())
    row = draft_row(
        invoice_id,
        customer=customer,
        amounts=amounts,
        description=description,
        now=now,
        contact=contact,
    )
    await conn.execute(insert(invoices).values(row))
    await conn.execute(insert(invoice_lines), line_rows(invoice_id, amounts.lines))
    return await lock_invoice(conn, invoice_id=invoice_id)


async def next_invoice_number(conn: AsyncConnection, *, prefix: str) -> str:
    """The next number of `prefix`, from its counter row, locked until the transaction ends:
    numbers are handed out in commit order and a rolled-back transaction gives its back."""
    [number] = await next_invoice_numbers(conn, prefix=prefix, count=1)
    return number


async def next_invoice_numbers(conn: AsyncConnection, *, prefix: str, count: int) -> list[str]:
    """The next `count` numbers of `prefix`, in order, taken as one range from its counter
    (locked until the transaction ends, as `next_invoice_number`)."""
    bump = (
        update(invoice_counters)
        .where(invoice_counters.c.prefix == prefix)
        .values(next_value=invoice_counters.c.next_value + count)
        .returning(invoice_counters.c.next_value)
    )
    value = (await conn.execute(bump)).scalar_one_or_none()
    if value is None:
        dialect: Any
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect
        await conn.execute(
            dialect.insert(invoice_counters)
            .values(prefix=prefix, next_value=0)
            .on_conflict_do_nothing()
        )
        value = (await conn.execute(bump)).scalar_one()
    last = int(value)
    return [f"{prefix}-{n:06d}" for n in range(last - count + 1, last + 1)]


async def finalize_invoice(
    conn: AsyncConnection, *, invoice_id: str, prefix: str, now: datetime
) -> Invoice:
    """Draft -> open: a number, and the receivable posted. An invoice of 0 is paid at once."""
    invoice = await lock_invoice(conn, invoice_id=invoice_id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(f"invoice {invoice.id} is {invoice.status}, not a draft")
    await post_posting(conn, posting=issued_posting(invoice), now=now)
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(status=InvoiceStatus.OPEN.value, finalized_at=now, updated_at=now)
    )
    if invoice.total_micros == 0:
        # Paid before it is numbered: paying locks accounts, which come before the counter.
        await settle_invoice(conn, invoice_id=invoice.id, charge=None, now=now)
    # The number last (`journal.lock_order`): the counter is locked until the commit.
    number = await next_invoice_number(conn, prefix=prefix)
    await conn.execute(update(invoices).where(invoices.c.id == invoice.id).values(number=number))
    return await lock_invoice(conn, invoice_id=invoice.id)


def issued_posting(invoice: Invoice) -> NewPosting:
    """The posting that opens an invoice: its receivable against where its lines and tax go.
    Written before the invoice is numbered (the counter is taken last): its `invoice_id`, not
    its memo, names the invoice."""
    lines = [(Account(AccountKind.RECEIVABLE, invoice.customer.id), invoice.total_micros)]
    lines += _line_accounts(invoice, sign=-1)
    return NewPosting(PostingKind.INVOICE_ISSUED, lines, "invoice issued", invoice_id=invoice.id)


def _line_accounts(invoice: Invoice, *, sign: int) -> list[tuple[Account, int]]:
    """Where an invoice's lines and tax go: revenue, billed credits, rounding, tax."""
    accounts = {
        LineKind.PLAN_FEE: Account(AccountKind.REVENUE),
        LineKind.USAGE: Account(AccountKind.REVENUE),
        LineKind.CREDITS: Account(AccountKind.CREDITS_BILLED, invoice.customer.id),
        LineKind.ROUNDING: Account(AccountKind.ROUNDING),
    }
    lines = [(accounts[line.kind], sign * line.amount_micros) for line in invoice.lines]
    lines.append((Account(AccountKind.TAX_PAYABLE), sign * invoice.tax_micros))
    return lines


async def issue_invoice(
    conn: AsyncConnection,
    *,
    customer: Customer,
    lines: Sequence[NewLine],
    description: str,
    tax_rates: Mapping[str, Decimal],
    prefix: str,
    now: datetime,
    contact: Contact = NO_CONTACT,
) -> Invoice:
    """An open invoice with its number and its receivable posted, in the caller's transaction
    (commit it before charging: `charge_invoice`). Of 0 it is paid at once. Addressed and taxed
    by `contact` (`payments.service.billing_contacts`)."""
    draft = await create_draft_invoice(
        conn,
        customer=customer,
        lines=lines,
        description=description,
        tax_rates=tax_rates,
        now=now,
        contact=contact,
    )
    return await finalize_invoice(conn, invoice_id=draft.id, prefix=prefix, now=now)


# --------------------------------------------------------------------------------- reading


async def lock_invoice(conn: AsyncConnection, *, invoice_id: str) -> Invoice:
    return await _read_invoice(conn, invoice_id, for_update=True)


async def get_invoice(
    conn: AsyncConnection, *, invoice_id: str, customer: Customer | None = None
) -> Invoice:
    """The invoice; NotFound when it is not `customer`'s (another's looks like none)."""
    invoice = await _read_invoice(conn, invoice_id, for_update=False)
    if customer is not None and invoice.customer != customer:
        raise NotFound(f"no invoice {invoice_id}")
    return invoice


async def _read_invoice(conn: AsyncConnection, invoice_id: str, *, for_update: bool) -> Invoice:
    query = select(invoices).where(invoices.c.id == invoice_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no invoice {invoice_id}")
    [invoice] = await _with_lines(conn, [row])
    return invoice


async def list_invoices(
    conn: AsyncConnection,
    *,
    customer: Customer,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[Invoice]:
    """A customer's invoices, newest first (drafts are not shown), `limit` of them, older than
    `before` (created_at, id)."""
    query = (
        select(invoices)
        .where(invoices.c.customer_id == customer.id)
        .where(invoices.c.status != InvoiceStatus.DRAFT.value)
        .order_by(invoices.c.created_at.desc(), invoices.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        created_at, invoice_id = before
        query = query.where(
            (invoices.c.created_at < created_at)
            | ((invoices.c.created_at == created_at) & (invoices.c.id < invoice_id))
        )
    rows = (await conn.execute(query)).mappings().all()
    return await _with_lines(conn, rows)


async def _with_lines(conn: AsyncConnection, rows: Sequence[Mapping[Any, Any]]) -> list[Invoice]:
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    line_rows = await conn.execute(
        select(invoice_lines)
        .where(invoice_lines.c.invoice_id.in_(ids))
        .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)
    )
    by_invoice: dict[str, list[InvoiceLine]] = {invoice_id: [] for invoice_id in ids}
    for line in line_rows.mappings():
        by_invoice[line["invoice_id"]].append(_line_of_row(line))
    return [_invoice_of_row(row, by_invoice[row["id"]]) for row in rows]


def _line_of_row(row: Mapping[Any, Any]) -> InvoiceLine:
    return record_of(InvoiceLine, row, kind=LineKind(row["kind"]))


def _invoice_of_row(row: Mapping[Any, Any], lines: list[InvoiceLine]) -> Invoice:
    return record_of(
        Invoice,
        row,
        customer=Customer(row["customer_kind"], row["customer_id"]),
        status=InvoiceStatus(row["status"]),
        tax_rate=Decimal(row["tax_rate"]),
        lines=tuple(lines),
    )


# -------------------------------------------------------------------------------- settling


async def settle_invoice(
    conn: AsyncConnection, *, invoice_id: str, charge: Charge | None, now: datetime
) -> Invoice:
    """Open -> paid, by `charge` (None: nothing to charge, a 0 invoice or one paid elsewhere),
    in the caller's transaction: the cash posted against the receivable, and each line's
    effect on the balance (credits to the stable bucket, usage off total_due)."""
    invoice = await lock_invoice(conn, invoice_id=invoice_id)
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(paid_values(invoice, charge, now))
    )
    await post_posting(conn, posting=paid_posting(invoice, charge), now=now)
    # Locked whether or not the invoice delivers: a credit held against it is released
    # under it (invoicing.fee_credits).
    balance = await lock_balance(conn, customer=invoice.customer)
    await _deliver(conn, invoice, balance, now)
    await release_held_credits(conn, invoice_ids=[invoice.id], now=now)
    return await lock_invoice(conn, invoice_id=invoice.id)


def paid_values(invoice: Invoice, charge: Charge | None, now: datetime) -> dict[str, Any]:
    """The columns of an open invoice that `charge` pays (Conflict if it is not open, or if
    the charge is not what it has left to pay)."""
    if invoice.status != InvoiceStatus.OPEN:
        raise Conflict(f"invoice {invoice.number or invoice.id} is {invoice.status}, not open")
    paid = invoice.total_micros - invoice.amount_paid_micros
    if charge is not None and charge.amount_cents * MICROS_PER_CENT != paid:
        raise Conflict(
            f"charge {charge.id} of {charge.amount_cents} cents does not pay invoice"
            f" {invoice.number}'s {format_micros(paid)} USD"
        )
    return {
        "status": InvoiceStatus.PAID.value,
        "amount_paid_micros": invoice.total_micros,
        "charge_id": charge.id if charge else None,
        "paid_at": now,
        "closed_at": now,
        "updated_at": now,
    }


def paid_posting(invoice: Invoice, charge: Charge | None) -> NewPosting:
    """The cash that paying the rest of an open invoice takes, against its receivable."""
    paid = invoice.total_micros - invoice.amount_paid_micros
    return NewPosting(
        PostingKind.CHARGE,
        [
            (Account(AccountKind.PROCESSOR_CASH), paid),
            (Account(AccountKind.RECEIVABLE, invoice.customer.id), -paid),
        ],
        # A 0 invoice is paid before it is numbered (`finalize_invoice`): its id names it.
        f"invoice {invoice.number or invoice.id} paid",
        invoice_id=invoice.id,
        processor_ref=charge.id if charge else None,
    )


Movement = tuple[dict[Bucket, int], Posting]


def deliveries(invoice: Invoice, total_due_micros: int) -> tuple[list[NewPosting], list[Movement]]:
    """What paying the invoice gives a customer whose total_due is `total_due_micros`: bought
    credits (journal and stable bucket), settled usage (total_due, at most what is due)."""
    credits = invoice.total_of(LineKind.CREDITS)
    usage = invoice.total_of(LineKind.USAGE)
    postings, movements = [], []
    if credits:
        customer_id = invoice.customer.id
        postings.append(
            NewPosting(
                PostingKind.CREDIT_PURCHASE,
                [
                    (Account(AccountKind.CREDITS_BILLED, customer_id), credits),
                    (Account(AccountKind.CREDITS_SOLD, customer_id), -credits),
                ],
                f"credits of invoice {invoice.number} delivered",
                invoice_id=invoice.id,
            )
        )
        reason = Posting(Reason.CREDIT_PURCHASE, "system", invoice.id)
        movements.append(({Bucket.STABLE: credits}, reason))
    settled = min(usage, max(total_due_micros, 0))
    if settled:
        reason = Posting(Reason.INVOICE_PAID, "system", invoice.id)
        movements.append(({Bucket.TOTAL_DUE: -settled}, reason))
    return postings, movements


def delivers(invoice: Invoice) -> bool:
    """Whether paying the invoice moves the customer's balance (credits or usage)."""
    return bool(invoice.total_of(LineKind.CREDITS) or invoice.total_of(LineKind.USAGE))


async def _deliver(
    conn: AsyncConnection, invoice: Invoice, balance: Balance, now: datetime
) -> None:
    """What paying the invoice gives the customer (`balance`, locked): bought credits,
    settled usage."""
    if not delivers(invoice):
        return
    postings, movements = deliveries(invoice, balance.total_due_micros)
    for posting in postings:
        await post_posting(conn, posting=posting, now=now)
    await post_batch(conn, work=[(balance, movements)], now=now)


async def mark_uncollectible(conn: AsyncConnection, *, invoice_id: str, now: datetime) -> Invoice:
    """Open -> uncollectible (dunning gave up): the receivable written off (credits never
    delivered are simply not billed any more); nothing is charged again."""
    return await _close_unpaid(conn, invoice_id, InvoiceStatus.UNCOLLECTIBLE, now)


async def void_invoice(conn: AsyncConnection, *, invoice_id: str, now: datetime) -> Invoice:
    """Draft or open -> void: issued in error; the issuing posting is reversed."""
    return await _close_unpaid(conn, invoice_id, InvoiceStatus.VOID, now)


async def _close_unpaid(
    conn: AsyncConnection, invoice_id: str, status: InvoiceStatus, now: datetime
) -> Invoice:
    invoice = await lock_invoice(conn, invoice_id=invoice_id)
    allowed = {InvoiceStatus.OPEN} | ({InvoiceStatus.DRAFT} if status == "void" else set())
    if invoice.status not in allowed:
        raise Conflict(f"invoice {invoice.number or invoice.id} is {invoice.status}")
    pending = await _pending_attempt(conn, invoice.id)
    if pending is not None:
        raise Conflict(f"a payment of invoice {invoice.number} is in progress")
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(status=status.value, closed_at=now, updated_at=now)
    )
    if invoice.status == InvoiceStatus.OPEN:
        receivable = Account(AccountKind.RECEIVABLE, invoice.customer.id)
        if status == InvoiceStatus.VOID:
            lines = [(receivable, -invoice.total_micros), *_line_accounts(invoice, sign=1)]
            kind = PostingKind.VOID
        else:
            lines = _write_off_lines(invoice, sign=1)
            kind = PostingKind.WRITE_OFF
        await post_journal(
            conn,
            kind=kind,
            lines=lines,
            memo=f"invoice {invoice.number} {status}",
            invoice_id=invoice.id,
            now=now,
        )
    return await lock_invoice(conn, invoice_id=invoice.id)


def _write_off_lines(invoice: Invoice, *, sign: int) -> list[tuple[Account, int]]:
    """What writing an invoice off posts (`sign` 1) or what undoing it posts (-1): the
    receivable to bad debt, and its credits (never delivered) no longer billed."""
    credits = invoice.total_of(LineKind.CREDITS)
    return [
        (Account(AccountKind.RECEIVABLE, invoice.customer.id), -sign * invoice.total_micros),
        (Account(AccountKind.CREDITS_BILLED, invoice.customer.id), sign * credits),
        (Account(AccountKind.BAD_DEBT), sign * (invoice.total_micros - credits)),
    ]


async def _reinstate(conn: AsyncConnection, invoice: Invoice, *, now: datetime) -> None:
    """Uncollectible -> open, in the transaction that settles its charge: the write-off undone,
    so that the charge posts against the receivable as for any invoice."""
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(status=InvoiceStatus.OPEN.value, closed_at=None, updated_at=now)
    )
    await post_journal(
        conn,
        kind=PostingKind.WRITE_OFF_REVERSED,
        lines=_write_off_lines(invoice, sign=-1),
        memo=f"invoice {invoice.number} paid after it was written off",
        invoice_id=invoice.id,
        now=now,
    )


async def end_delinquency(conn: AsyncConnection, *, customer: Customer, now: datetime) -> bool:
    """Dunning's mark comes off once the customer has no uncollectible invoice left; whether it
    did. The customer's row is locked before the invoices are counted, and dunning writes the
    mark after the invoice it gives up on, so a write-off committing meanwhile is either counted
    here or sets the mark again after this."""
    found = await lock_payment_customer(conn, customer=customer)
    if found is None or not found.delinquent:
        return False
    left = (
        select(invoices.c.id)
        .where(invoices.c.customer_id == customer.id)
        .where(invoices.c.status == InvoiceStatus.UNCOLLECTIBLE.value)
        .limit(1)
    )
    if (await conn.execute(left)).first() is not None:
        return False
    await set_delinquent(conn, customer=customer, delinquent=False, now=now)
    return True


# -------------------------------------------------------------------------------- charging

# What a charge may pay: an open invoice, or one dunning gave up on (the customer paying it).
CHARGEABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


@dataclass(frozen=True)
class Attempt:
    id: str
    invoice_id: str
    attempt: int
    idempotency_key: str
    status: AttemptStatus
    amount_cents: int
    processor_customer_id: str
    payment_method_id: str | None
    charge_id: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime


def attempt_key(invoice_id: str, attempt: int) -> str:
    """The idempotency key of a charge: what it pays for, so a retry can never pay twice."""
    return f"invoice-{invoice_id}-attempt-{attempt}"


@dataclass(frozen=True)
class ChargeOutcome:
    invoice: Invoice
    attempt: Attempt | None  # None: the invoice was paid already, nothing was tried

    def raise_unless_paid(self) -> Invoice:
        """PaymentRequired with a message a person can act on, unless the invoice is paid."""
        if self.invoice.paid:
            return self.invoice
        attempt = self.attempt
        number = self.invoice.number
        if attempt is not None and attempt.status == AttemptStatus.REQUIRES_ACTION:
            raise PaymentRequired(
                f"your bank asks you to authenticate the payment of invoice {number}: confirm it"
                " with your bank, then pay the invoice again"
            )
        if attempt is not None and attempt.failure_code == "no_payment_method":
            raise PaymentRequired(
                f"invoice {number} is open and no payment method is on file: add a card, then"
                f" pay it with POST /user/payment/invoices/{self.invoice.id}/pay"
            )
        reason = attempt.failure_message if attempt and attempt.failure_message else "declined"
        raise PaymentRequired(
            f"the charge for invoice {number} failed ({reason}): the invoice stays"
            f" {self.invoice.status}; update your payment method, then pay it again"
        )


# Test-only: called right after the processor answered and before its answer is committed, so
# that a test can kill the process exactly there (tests/invoicing/test_crash.py).
AfterAnswer = Callable[[Charge], None]


async def charge_invoice(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    invoice_id: str,
    processor_customer_id: str,
    now: datetime,
    payment_method_id: str | None = None,
    after_answer: AfterAnswer | None = None,
) -> ChargeOutcome:
    """Charge what an open or uncollectible invoice has left to pay, in its own transactions
    (never call it inside one): the attempt is committed pending, the processor is called with
    the attempt's idempotency key, and its answer is applied in a second transaction. A paid
    invoice is answered as it is (nothing charged); a void one is a Conflict."""
    async with transaction(engine) as conn:
        invoice = await lock_invoice(conn, invoice_id=invoice_id)
        pending = await _pending_attempt(conn, invoice.id)
    if pending is not None:
        # An earlier attempt never learned its answer: learn it before trying again.
        await _reconcile_attempt(engine, processor, pending, now=now, abandon_after=ABANDON_AFTER)
    await resolve_awaiting_action(engine, processor, invoice_id=invoice_id, now=now)
    async with transaction(engine) as conn:
        invoice = await lock_invoice(conn, invoice_id=invoice_id)
        if invoice.status == InvoiceStatus.PAID:
            return ChargeOutcome(invoice, None)
        if invoice.status not in CHARGEABLE:
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status}: it is not to be paid"
            )
        if await _pending_attempt(conn, invoice.id) is not None:
            raise Conflict(
                f"a payment of invoice {invoice.number} is in progress: try again in a minute"
            )
        attempt = await _new_attempt(
            conn, invoice, processor_customer_id, payment_method_id, now=now
        )
    try:
        charge = await processor.charge(
            ChargeRequest(
                customer_id=processor_customer_id,
                amount_cents=attempt.amount_cents,
                currency=CURRENCY,
                idempotency_key=attempt.idempotency_key,
                description=f"Invoice {invoice.number}",
                payment_method_id=payment_method_id,
            )
        )
    except ProcessorError as exc:
        async with transaction(engine) as conn:
            await _fail_attempt(conn, attempt, exc.code, exc.message, now=now)
            return ChargeOutcome(
                await lock_invoice(conn, invoice_id=invoice.id),
                await _attempt(conn, attempt.id),
            )
    except ProcessorUnavailable:
        raise ServiceUnavailable(
            f"the payment processor did not answer: the payment of invoice {invoice.number}"
            " will be checked and completed; look at the invoice again shortly",
            retry_after_seconds=5,
        ) from None
    if after_answer is not None:
        after_answer(charge)
    async with transaction(engine) as conn:
        await apply_charge(conn, attempt_id=attempt.id, charge=charge, now=now)
        return ChargeOutcome(
            await lock_invoice(conn, invoice_id=invoice.id), await _attempt(conn, attempt.id)
        )


async def _new_attempt(
    conn: AsyncConnection,
    invoice: Invoice,
    processor_customer_id: str,
    payment_method_id: str | None,
    *,
    now: datetime,
) -> Attempt:
    row = attempt_row(invoice, processor_customer_id, payment_method_id, now=now)
    await conn.execute(insert(invoice_payment_attempts).values(row))
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(attempt_count=row["attempt"], updated_at=now)
    )
    return await _attempt(conn, row["id"])


def attempt_row(
    invoice: Invoice, processor_customer_id: str, payment_method_id: str | None, *, now: datetime
) -> dict[str, Any]:
    """The next attempt at charging what `invoice` has left to pay, pending."""
    number = invoice.attempt_count + 1
    remaining = invoice.total_micros - invoice.amount_paid_micros
    return {
        "id": str(uuid.uuid4()),
        "invoice_id": invoice.id,
        "attempt": number,
        "idempotency_key": attempt_key(invoice.id, number),
        "status": AttemptStatus.PENDING.value,
        "amount_cents": remaining // MICROS_PER_CENT,
        "processor_customer_id": processor_customer_id,
        "payment_method_id": payment_method_id,
        "charge_id": None,
        "failure_code": None,
        "failure_message": None,
        "created_at": now,
        "updated_at": now,
    }


async def _attempt(conn: AsyncConnection, attempt_id: str) -> Attempt:
    query = select(invoice_payment_attempts).where(invoice_payment_attempts.c.id == attempt_id)
    return _attempt_of_row((await conn.execute(query)).mappings().one())


def _attempt_of_row(row: Mapping[Any, Any]) -> Attempt:
    return record_of(Attempt, row, status=AttemptStatus(row["status"]))


def asked_of(attempt: Attempt) -> ChargeRequest:
    """What the attempt asked the processor for, as a charge found for it (by key or id) is
    held to: the processor answers none that is not this (`check_same_charge`), which never
    looks at the description."""
    return ChargeRequest(
        customer_id=attempt.processor_customer_id,
        amount_cents=attempt.amount_cents,
        currency=CURRENCY,
        idempotency_key=attempt.idempotency_key,
        description="",
        payment_method_id=attempt.payment_method_id,
    )


async def _pending_attempt(conn: AsyncConnection, invoice_id: str) -> Attempt | None:
    query = select(invoice_payment_attempts).where(
        invoice_payment_attempts.c.invoice_id == invoice_id,
        invoice_payment_attempts.c.status == AttemptStatus.PENDING.value,
    )
    row = (await conn.execute(query)).mappings().first()
    return _attempt_of_row(row) if row else None


async def attempt_by_key(conn: AsyncConnection, *, idempotency_key: str) -> Attempt | None:
    """The attempt whose charge carries this idempotency key (as the processor holds it)."""
    query = select(invoice_payment_attempts).where(
        invoice_payment_attempts.c.idempotency_key == idempotency_key
    )
    row = (await conn.execute(query)).mappings().first()
    return _attempt_of_row(row) if row else None


async def list_attempts(conn: AsyncConnection, *, invoice_id: str) -> list[Attempt]:
    query = (
        select(invoice_payment_attempts)
        .where(invoice_payment_attempts.c.invoice_id == invoice_id)
        .order_by(invoice_payment_attempts.c.attempt)
    )
    return [_attempt_of_row(row) for row in (await conn.execute(query)).mappings()]


async def _fail_attempt(
    conn: AsyncConnection, attempt: Attempt, code: str, message: str, *, now: datetime
) -> None:
    await conn.execute(
        update(invoice_payment_attempts)
        .where(invoice_payment_attempts.c.id == attempt.id)
        .where(invoice_payment_attempts.c.status == AttemptStatus.PENDING.value)
        .values(failed_values(code, message, now))
    )


def failed_values(code: str, message: str, now: datetime) -> dict[str, Any]:
    """The columns of a pending attempt the processor refused (ProcessorError)."""
    return {
        "status": AttemptStatus.FAILED.value,
        "failure_code": code[:64],
        "failure_message": message[:500],
        "updated_at": now,
    }


@dataclass(frozen=True)
class ChargeAnswer:
    """What applying the processor's answer does: the attempt's status, and whether the
    invoice is settled by it."""

    status: AttemptStatus
    settles: bool


def charge_answer(attempt: Attempt, invoice: Invoice, charge: Charge) -> ChargeAnswer | None:
    """The rule of applying `charge` to `attempt` of `invoice` (both read under the invoice's
    lock): None when the attempt was answered already (applying an answer again changes
    nothing); a success settles an open invoice, or a written-off one (`_settle_charged`).
    Every path that applies answers (one charge, or a batch: invoicing.bulk) goes through
    here."""
    status = AttemptStatus(charge.status.value)
    if not takes_answer(attempt.status, charge.status) or attempt.status == status:
        return None
    settles = charge.status == ChargeStatus.SUCCEEDED and invoice.status in CHARGEABLE
    if charge.status == ChargeStatus.SUCCEEDED and not settles:
        # Money taken for an invoice paid otherwise or void: held, then refunded.
        status = AttemptStatus.REFUND_DUE
    return ChargeAnswer(status, settles)


def answered_values(charge: Charge, answer: ChargeAnswer, now: datetime) -> dict[str, Any]:
    """The columns of an attempt that `charge` answered."""
    return {
        "status": answer.status.value,
        "charge_id": charge.id,
        "failure_code": charge.failure_code,
        "failure_message": (charge.failure_message or "")[:500] or None,
        "updated_at": now,
    }


async def apply_charge(
    conn: AsyncConnection, *, attempt_id: str, charge: Charge, now: datetime
) -> Attempt:
    """The processor's answer to an attempt, applied once: a success settles the invoice.
    Applying the same answer again changes nothing."""
    attempt = await _attempt(conn, attempt_id)
    invoice = await lock_invoice(conn, invoice_id=attempt.invoice_id)
    attempt = await _attempt(conn, attempt_id)  # again, under the invoice's lock
    answer = charge_answer(attempt, invoice, charge)
    if answer is None:
        return attempt
    await conn.execute(
        update(invoice_payment_attempts)
        .where(invoice_payment_attempts.c.id == attempt.id)
        .values(answered_values(charge, answer, now))
    )
    if answer.settles:
        await _settle_charged(conn, invoice, charge, now=now)
    elif answer.status == AttemptStatus.REFUND_DUE:
        await _hold_stray_charge(conn, invoice, charge, now=now)
    return await _attempt(conn, attempt.id)


async def _settle_charged(
    conn: AsyncConnection, invoice: Invoice, charge: Charge, *, now: datetime
) -> None:
    """A charge that succeeded pays its invoice; one written off is reinstated first (money
    taken always pays: even from an attempt made before dunning gave up), and its customer may
    stop being delinquent."""
    if invoice.status == InvoiceStatus.OPEN:
        await settle_invoice(conn, invoice_id=invoice.id, charge=charge, now=now)
        return
    await _reinstate(conn, invoice, now=now)
    await settle_invoice(conn, invoice_id=invoice.id, charge=charge, now=now)
    await end_delinquency(conn, customer=invoice.customer, now=now)


async def _hold_stray_charge(
    conn: AsyncConnection, invoice: Invoice, charge: Charge, *, now: datetime
) -> None:
    """Money the processor took for an invoice that did not need it any more: cash in, owed
    back to the customer until `refund_stray_charges` returns it. `charge` is the attempt's
    own, in USD and of its amount (which is what is refunded): the processor answers no other
    for its key (`check_same_charge`), so no other currency's cents are posted as dollars."""
    logger.warning(
        "charge %s succeeded for invoice %s, which is %s: it will be refunded",
        charge.id,
        invoice.number,
        invoice.status,
    )
    memo = f"charge for invoice {invoice.number}, which was {invoice.status}: to refund"
    await _post_stray(conn, invoice, charge.amount_cents, charge.id, memo=memo, now=now)


async def _post_stray(
    conn: AsyncConnection,
    invoice: Invoice,
    cents: int,
    processor_ref: str,
    *,
    memo: str,
    now: datetime,
) -> None:
    """A stray charge's money: in (positive cents) and owed back, or back out (negative)."""
    amount = cents * MICROS_PER_CENT
    await post_journal(
        conn,
        kind=PostingKind.CHARGE if cents > 0 else PostingKind.REFUND,
        lines=[
            (Account(AccountKind.PROCESSOR_CASH), amount),
            (Account(AccountKind.REFUND_DUE, invoice.customer.id), -amount),
        ],
        memo=memo,
        invoice_id=invoice.id,
        processor_ref=processor_ref,
        now=now,
    )


def stray_refund_key(attempt: "Attempt") -> str:
    return f"stray-refund-{attempt.idempotency_key}"


async def refund_stray_charges(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    now: datetime,
    invoice_id: str | None = None,
) -> list[str]:
    """Refund in full every `refund_due` attempt (of one invoice, or all), through the
    processor with a key of the attempt's own: a crash or a repeat refunds once. Answers the
    ids of the attempts refunded; one the processor does not answer for stays due."""
    query = select(invoice_payment_attempts).where(
        invoice_payment_attempts.c.status == AttemptStatus.REFUND_DUE.value
    )
    if invoice_id is not None:
        query = query.where(invoice_payment_attempts.c.invoice_id == invoice_id)
    async with reading(engine) as conn:
        due = [_attempt_of_row(row) for row in (await conn.execute(query)).mappings()]
    refunded = []
    for attempt in due:
        assert attempt.charge_id is not None  # apply_charge recorded the charge
        try:
            refund = await processor.refund(
                attempt.charge_id,
                amount_cents=attempt.amount_cents,
                idempotency_key=stray_refund_key(attempt),
            )
        except (ProcessorError, ProcessorUnavailable) as exc:
            logger.warning("refunding charge %s failed: %s", attempt.charge_id, exc)
            continue
        async with transaction(engine) as conn:
            if await _mark_stray_refunded(conn, attempt, refund.id, now=now):
                refunded.append(attempt.id)
    return refunded


async def _mark_stray_refunded(
    conn: AsyncConnection, attempt: "Attempt", refund_id: str, *, now: datetime
) -> bool:
    invoice = await lock_invoice(conn, invoice_id=attempt.invoice_id)
    done = await conn.execute(
        update(invoice_payment_attempts)
        .where(invoice_payment_attempts.c.id == attempt.id)
        .where(invoice_payment_attempts.c.status == AttemptStatus.REFUND_DUE.value)
        .values(status=AttemptStatus.REFUNDED.value, updated_at=now)
    )
    if done.rowcount == 0:
        return False  # refunded by a concurrent call
    memo = f"charge {attempt.charge_id} for invoice {invoice.number} refunded"
    await _post_stray(conn, invoice, -attempt.amount_cents, refund_id, memo=memo, now=now)
    return True


async def _cancel_waiting(
    engine: AsyncEngine, processor: PaymentProcessor, attempt: "Attempt", *, now: datetime
) -> "Attempt":
    """Cancel an attempt's charge that waits for the customer, and apply what the processor
    answers (canceled, or what the customer made of it first). ProcessorUnavailable: unknown."""
    assert attempt.charge_id is not None  # apply_charge recorded the charge
    try:
        charge = await processor.cancel_charge(attempt.charge_id, request=asked_of(attempt))
    except ProcessorError as exc:
        if exc.code != "resource_missing":
            # Refused to cancel (or not the attempt's charge: `check_same_charge`, which never
            # pays), and still waiting: charging anew could charge twice.
            logger.warning("charge %s was not canceled: %s", attempt.charge_id, exc.message)
            raise ProcessorUnavailable(exc.message) from exc
        # The processor knows no such charge: it cannot succeed later either.
        charge = _canceled(attempt, exc)
    async with transaction(engine) as conn:
        return await apply_charge(conn, attempt_id=attempt.id, charge=charge, now=now)


def _canceled(attempt: "Attempt", exc: ProcessorError) -> Charge:
    assert attempt.charge_id is not None
    return Charge(
        id=attempt.charge_id,
        idempotency_key=attempt.idempotency_key,
        status=ChargeStatus.CANCELED,
        amount_cents=attempt.amount_cents,
        currency=CURRENCY,
        payment_method_id=attempt.payment_method_id,
        failure_code=exc.code,
        failure_message=exc.message,
    )


async def resolve_awaiting_action(
    engine: AsyncEngine, processor: PaymentProcessor, *, invoice_id: str, now: datetime
) -> None:
    """Before an invoice is charged again: each earlier charge still waiting for the customer
    is canceled at the processor, so that it can never succeed later beside the new one. One
    the customer completed meanwhile is applied instead (it pays the invoice, and the caller
    then finds it paid). ServiceUnavailable when the processor does not answer: charging
    again without knowing could charge twice."""
    query = select(invoice_payment_attempts).where(
        invoice_payment_attempts.c.invoice_id == invoice_id,
        invoice_payment_attempts.c.status == AttemptStatus.REQUIRES_ACTION.value,
    )
    async with reading(engine) as conn:
        waiting = [_attempt_of_row(row) for row in (await conn.execute(query)).mappings()]
    for attempt in waiting:
        try:
            await _cancel_waiting(engine, processor, attempt, now=now)
        except ProcessorUnavailable:
            raise ServiceUnavailable(
                "an earlier payment of this invoice waits for the customer's authentication and"
                " the payment processor did not answer whether it went through: try again"
                " shortly",
                retry_after_seconds=5,
            ) from None
    if waiting:
        await refund_stray_charges(engine, processor, now=now, invoice_id=invoice_id)


async def waiting_for_customer(
    conn: AsyncConnection, *, invoice_ids: Sequence[str]
) -> dict[str, Attempt]:
    """Of `invoice_ids`, those whose latest charge waits for the customer's authentication,
    with that attempt."""
    if not invoice_ids:
        return {}
    query = (
        select(invoice_payment_attempts)
        .where(
            invoice_payment_attempts.c.invoice_id.in_(invoice_ids),
            invoice_payment_attempts.c.status == AttemptStatus.REQUIRES_ACTION.value,
        )
        .order_by(invoice_payment_attempts.c.attempt)
    )
    rows = (await conn.execute(query)).mappings()
    return {attempt.invoice_id: attempt for attempt in map(_attempt_of_row, rows)}


async def apply_authentication(
    engine: AsyncEngine, processor: PaymentProcessor, *, attempt: Attempt, now: datetime
) -> Invoice:
    """After the customer answered their bank (3-D Secure) for `attempt`: the processor asked
    for the charge's state and the answer applied at once (paid, or the attempt failed),
    rather than at the next reconcile."""
    await _reconcile_attempt(engine, processor, attempt, now=now, abandon_after=None)
    async with reading(engine) as conn:
        return await get_invoice(conn, invoice_id=attempt.invoice_id)


@dataclass
class Reconciliation:
    """What `reconcile_pending_charges` found, by attempt id."""

    applied: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)
    # Charges that succeeded for invoices that no longer needed them, refunded.
    refunded: list[str] = field(default_factory=list)


# An attempt the processor has no charge for may still be on its way to it from a request in
# progress; after this long it never will be.
ABANDON_AFTER = timedelta(minutes=10)


async def reconcile_pending_charges(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    now: datetime,
    abandon_after: timedelta = ABANDON_AFTER,
) -> Reconciliation:
    """Every attempt left pending (a crash, a processor that did not answer): ask the
    processor for the charge made with its key and apply it; an attempt with no charge older
    than `abandon_after` is marked abandoned (nothing was taken; the invoice stays open), one
    whose key holds another charge (another customer's, currency or amount) fails and pays
    nothing (`_refuse_other_charge`).
    Attempts that wait for the customer are asked too (the embedded processor sends no webhook
    when they authenticate): those of an open or uncollectible invoice may still complete; those
    of one that can no longer be paid (void, paid) are canceled. Then money owed back is
    refunded."""
    statuses = (AttemptStatus.PENDING.value, AttemptStatus.REQUIRES_ACTION.value)
    async with reading(engine) as conn:
        query = (
            select(invoice_payment_attempts, invoices.c.status.label("invoice_status"))
            .join(invoices, invoices.c.id == invoice_payment_attempts.c.invoice_id)
            .where(invoice_payment_attempts.c.status.in_(statuses))
            .order_by(invoice_payment_attempts.c.created_at)
        )
        rows = (await conn.execute(query)).mappings().all()
    report = Reconciliation()
    for row in rows:
        attempt = _attempt_of_row(row)
        closed = InvoiceStatus(row["invoice_status"]) not in CHARGEABLE
        if attempt.status == AttemptStatus.REQUIRES_ACTION and closed:
            outcome = await _reconcile_closed(engine, processor, attempt, now=now)
        else:
            outcome = await _reconcile_attempt(
                engine, processor, attempt, now=now, abandon_after=abandon_after
            )
        {"applied": report.applied, "abandoned": report.abandoned}.get(
            outcome, report.still_pending
        ).append(attempt.id)
    report.refunded = await refund_stray_charges(engine, processor, now=now)
    return report


async def _reconcile_closed(
    engine: AsyncEngine, processor: PaymentProcessor, attempt: Attempt, *, now: datetime
) -> str:
    try:
        await _cancel_waiting(engine, processor, attempt, now=now)
    except ProcessorUnavailable:
        return "pending"
    return "applied"


async def _reconcile_attempt(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    attempt: Attempt,
    *,
    now: datetime,
    abandon_after: timedelta | None,
) -> str:
    try:
        charge = await processor.find_charge(asked_of(attempt))
    except ProcessorUnavailable:
        return "pending"
    except ProcessorError as exc:
        return await _refuse_other_charge(engine, attempt, exc, now=now)
    if charge is not None:
        async with transaction(engine) as conn:
            applied = await apply_charge(conn, attempt_id=attempt.id, charge=charge, now=now)
        return "pending" if applied.status == attempt.status else "applied"
    too_soon = abandon_after is None or attempt.created_at > now - abandon_after
    if too_soon or attempt.status != AttemptStatus.PENDING:
        return "pending"  # only a charge never made is abandoned
    async with transaction(engine) as conn:
        await lock_invoice(conn, invoice_id=attempt.invoice_id)
        await conn.execute(
            update(invoice_payment_attempts)
            .where(invoice_payment_attempts.c.id == attempt.id)
            .where(invoice_payment_attempts.c.status == AttemptStatus.PENDING.value)
            .values(status=AttemptStatus.ABANDONED.value, updated_at=now)
        )
    return "abandoned"


async def _refuse_other_charge(
    engine: AsyncEngine, attempt: Attempt, exc: ProcessorError, *, now: datetime
) -> str:
    """The processor holds a charge under the attempt's key that is not the one it asked for
    (another customer's, currency or amount): it never pays the invoice, is never held as a
    stray charge (whose money zoopay would post as its own USD and refund), and credits
    nothing. A pending attempt fails with the processor's code, as `charge_invoice` fails one
    whose retried charge gets the same answer: the invoice stays open, and dunning (or the
    customer) charges it anew under the next attempt's key. That charge is none of zoopay's to
    refund or cancel: the operator is told, in the log."""
    logger.warning(
        "attempt %s of invoice %s: the processor holds another charge under key %s (%s);"
        " it pays nothing",
        attempt.id,
        attempt.invoice_id,
        attempt.idempotency_key,
        exc.message,
    )
    if attempt.status != AttemptStatus.PENDING:
        return "pending"  # one waiting for the customer keeps waiting for its own charge
    async with transaction(engine) as conn:
        await lock_invoice(conn, invoice_id=attempt.invoice_id)
        await _fail_attempt(conn, attempt, exc.code, exc.message, now=now)
    return "applied"


# --------------------------------------------------------------------------------- refunds


async def refund_invoice(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    *,
    invoice_id: str,
    amount_micros: int,
    idempotency_key: str,
    actor: str,
    now: datetime,
) -> Invoice:
    """Refund part or all of a paid invoice through the processor. The same key refunds once
    (a retry answers the invoice as it is); the refund row is committed pending before the
    processor is called, like a charge. A refund takes the credits it returns out of the stable
    bucket; credits already spent cannot be refunded (409)."""
    if amount_micros <= 0 or amount_micros % MICROS_PER_CENT:
        raise BadRequest("a refund is a positive amount in whole cents, e.g. 5.00")
    key = f"refund-{invoice_id}-{idempotency_key}"
    async with transaction(engine) as conn:
        invoice = await lock_invoice(conn, invoice_id=invoice_id)
        existing = await _refund_by_key(conn, key)
        if existing is None and invoice.charge_id is None:
            raise BadRequest(
                f"invoice {invoice.number} was not paid by a charge: nothing to refund"
            )
        if existing is None:
            credits = await _check_refund(conn, invoice, amount_micros)
            existing = await _new_refund(conn, invoice, key, amount_micros, credits, actor, now)
        elif existing["amount_cents"] * MICROS_PER_CENT != amount_micros:
            raise Conflict(
                f"idempotency key {idempotency_key!r} was used for a refund of"
                f" {format_micros(existing['amount_cents'] * MICROS_PER_CENT)} USD"
            )
        if existing["status"] == "failed":
            # Answered as the first time: a refused refund is no refund done.
            raise BadRequest(
                f"the processor refused the refund with idempotency key {idempotency_key!r}:"
                " send it with a new idempotency_key to try again"
            )
        if existing["status"] != "pending":
            return invoice
    assert invoice.charge_id is not None  # checked before the refund was recorded
    try:
        refund = await processor.refund(
            invoice.charge_id, amount_cents=existing["amount_cents"], idempotency_key=key
        )
    except ProcessorError as exc:
        async with transaction(engine) as conn:
            await conn.execute(
                update(invoice_refunds)
                .where(invoice_refunds.c.id == existing["id"])
                .values(status="failed", updated_at=now)
            )
        raise BadRequest(f"the processor refused the refund: {exc.message}") from None
    except ProcessorUnavailable:
        raise ServiceUnavailable(
            "the payment processor did not answer: send the same refund again (same"
            " idempotency_key) to complete it",
            retry_after_seconds=5,
        ) from None
    async with transaction(engine) as conn:
        return await _apply_refund(conn, existing["id"], refund.id, now)


async def _refund_by_key(conn: AsyncConnection, key: str) -> Mapping[str, Any] | None:
    query = select(invoice_refunds).where(invoice_refunds.c.idempotency_key == key)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def _check_refund(conn: AsyncConnection, invoice: Invoice, amount_micros: int) -> int:
    """How much of the refund takes back credits; BadRequest beyond what was paid."""
    if invoice.status != InvoiceStatus.PAID:
        raise BadRequest(f"invoice {invoice.number} is {invoice.status}: only a paid one refunds")
    committed = await conn.execute(
        select(
            func.coalesce(func.sum(invoice_refunds.c.amount_cents), 0),
            func.coalesce(func.sum(invoice_refunds.c.credits_micros), 0),
        ).where(
            invoice_refunds.c.invoice_id == invoice.id,
            invoice_refunds.c.status.in_(("pending", "succeeded")),
        )
    )
    cents, credits_refunded = committed.one()
    refundable = invoice.amount_paid_micros - int(cents) * MICROS_PER_CENT
    if amount_micros > refundable:
        raise BadRequest(
            f"invoice {invoice.number} has {format_micros(refundable)} USD left to refund, less"
            f" than {format_micros(amount_micros)}"
        )
    # Credits first: a credit purchase's refund returns credits before tax and rounding.
    credits = min(amount_micros, invoice.total_of(LineKind.CREDITS) - int(credits_refunded))
    if credits > 0:
        balance = await lock_balance(conn, customer=invoice.customer)
        if balance.stable_micros < credits:
            raise Conflict(
                f"the customer has spent these credits: {format_micros(balance.stable_micros)}"
                f" USD of stable credits are left, {format_micros(credits)} would be refunded"
            )
    return max(credits, 0)


async def _new_refund(
    conn: AsyncConnection,
    invoice: Invoice,
    key: str,
    amount_micros: int,
    credits_micros: int,
    actor: str,
    now: datetime,
) -> Mapping[str, Any]:
    row = {
        "id": str(uuid.uuid4()),
        "invoice_id": invoice.id,
        "idempotency_key": key,
        "amount_cents": amount_micros // MICROS_PER_CENT,
        "credits_micros": credits_micros,
        "status": "pending",
        "processor_refund_id": None,
        "actor": actor,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(insert(invoice_refunds).values(row))
    return row


async def _apply_refund(
    conn: AsyncConnection, refund_id: str, processor_refund_id: str, now: datetime
) -> Invoice:
    row = (
        (await conn.execute(select(invoice_refunds).where(invoice_refunds.c.id == refund_id)))
        .mappings()
        .one()
    )
    invoice = await lock_invoice(conn, invoice_id=row["invoice_id"])
    if row["status"] != "pending":
        return invoice
    amount = int(row["amount_cents"]) * MICROS_PER_CENT
    credits = int(row["credits_micros"])
    # What refunds before this one gave back beyond credits (credits are refunded first).
    before = (
        await conn.execute(
            select(
                func.coalesce(
                    func.sum(
                        invoice_refunds.c.amount_cents * MICROS_PER_CENT
                        - invoice_refunds.c.credits_micros
                    ),
                    0,
                )
            ).where(
                invoice_refunds.c.invoice_id == invoice.id,
                invoice_refunds.c.status == "succeeded",
            )
        )
    ).scalar_one()
    await conn.execute(
        update(invoice_refunds)
        .where(invoice_refunds.c.id == refund_id)
        .values(status="succeeded", processor_refund_id=processor_refund_id, updated_at=now)
    )
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice.id)
        .values(amount_refunded_micros=invoice.amount_refunded_micros + amount, updated_at=now)
    )
    await post_journal(
        conn,
        kind=PostingKind.REFUND,
        lines=[
            (Account(AccountKind.PROCESSOR_CASH), -amount),
            (Account(AccountKind.CREDITS_SOLD, invoice.customer.id), credits),
            *_refunded_rest(invoice, before=int(before), amount=amount - credits),
        ],
        memo=f"refund of invoice {invoice.number}",
        invoice_id=invoice.id,
        processor_ref=processor_refund_id,
        now=now,
    )
    if credits:
        balance = await lock_balance(conn, customer=invoice.customer)
        # Checked when the refund began; credits spent since then become money due.
        taken = min(credits, max(balance.stable_micros, 0))
        reason = Posting(Reason.REFUND, row["actor"], invoice.id)
        deltas = {Bucket.STABLE: -taken, Bucket.TOTAL_DUE: credits - taken}
        await post(conn, balance=balance, deltas=deltas, posting=reason, now=now)
    return await lock_invoice(conn, invoice_id=invoice.id)


def _refunded_rest(invoice: Invoice, *, before: int, amount: int) -> list[tuple[Account, int]]:
    """Where `amount` of a refund beyond credits comes from, `before` of that rest having been
    refunded already: the tax and the rounding in their share of the rest (rounded down, so
    that the whole rest refunded returns them exactly), revenue the remainder."""
    rest = invoice.total_micros - invoice.total_of(LineKind.CREDITS)
    if rest <= 0:
        return [(Account(AccountKind.REVENUE), amount)]

    def share(part: int) -> int:
        return part * (before + amount) // rest - part * before // rest

    tax = share(invoice.tax_micros)
    rounding = share(invoice.total_of(LineKind.ROUNDING))
    return [
        (Account(AccountKind.TAX_PAYABLE), tax),
        (Account(AccountKind.ROUNDING), rounding),
        (Account(AccountKind.REVENUE), amount - tax - rounding),
    ]


async def reconcile_pending_refunds(
    engine: AsyncEngine, processor: PaymentProcessor, *, now: datetime
) -> int:
    """Refunds left pending: asked again with their own key (the processor answers the same
    refund, or makes it now); answers how many were completed. One the processor refuses is
    failed, as `refund_invoice` fails one refused at once: left pending, it would keep its
    amount from what can be refunded for ever. One it still does not answer stays pending
    for the next time, as a pending charge attempt does."""
    async with reading(engine) as conn:
        rows = (
            (
                await conn.execute(
                    select(invoice_refunds, invoices.c.charge_id)
                    .join(invoices, invoices.c.id == invoice_refunds.c.invoice_id)
                    .where(invoice_refunds.c.status == "pending")
                )
            )
            .mappings()
            .all()
        )
    done = 0
    for row in rows:
        try:
            refund = await processor.refund(
                row["charge_id"],
                amount_cents=int(row["amount_cents"]),
                idempotency_key=row["idempotency_key"],
            )
        except ProcessorUnavailable:
            continue
        except ProcessorError as exc:
            logger.warning("pending refund %s refused by the processor: %s", row["id"], exc.message)
            async with transaction(engine) as conn:
                await _fail_pending_refund(conn, row["id"], row["invoice_id"], now)
            continue
        async with transaction(engine) as conn:
            await _apply_refund(conn, row["id"], refund.id, now)
        done += 1
    return done


async def _fail_pending_refund(
    conn: AsyncConnection, refund_id: str, invoice_id: str, now: datetime
) -> None:
    # Under the invoice's lock, as `_apply_refund`: a retry of the same refund that completed
    # it meanwhile is not undone (only a refund still pending fails).
    await lock_invoice(conn, invoice_id=invoice_id)
    await conn.execute(
        update(invoice_refunds)
        .where(invoice_refunds.c.id == refund_id, invoice_refunds.c.status == "pending")
        .values(status="failed", updated_at=now)
    )


async def reconcile_on_start(
    engine: AsyncEngine, processor: PaymentProcessor, now: datetime
) -> Reconciliation | None:
    """What a server does when it starts: pending charges and refunds reconciled. A database
    or processor that does not answer does not stop the start (the next start, or `zoopay
    billing run`, reconciles); it is logged."""
    try:
        report = await reconcile_pending_charges(engine, processor, now=now)
        await reconcile_pending_refunds(engine, processor, now=now)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        logger.warning("reconciling pending charges at start failed: %s", exc)
        return None
    if report.applied or report.abandoned:
        logger.info(
            "reconciled %d pending charges, abandoned %d",
            len(report.applied),
            len(report.abandoned),
        )
    return report
