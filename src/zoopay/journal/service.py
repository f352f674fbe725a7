"""The money journal: every charge, refund, settlement and credit purchase in double entry.

A posting is a set of lines on accounts whose amounts (micro-dollars, debits positive, credits
negative) sum to zero; each account keeps its balance, always the sum of its lines. Accounts:

- `receivable:<customer>`: what a customer owes on open invoices (debit balance).
- `processor_cash`: money taken by the processor and not refunded (debit balance).
- `revenue`: plan fees and usage invoiced (credit balance); refunds of them debit it.
- `tax_payable`: tax invoiced, owed to the tax authorities (credit balance).
- `credits_billed:<customer>`: credits invoiced but not yet paid (credit balance).
- `credits_sold:<customer>`: credits paid for and delivered to the stable bucket, net of
  refunds (credit balance). Spending credits is metering, not money, so this is what was
  bought, not what is left.
- `rounding`: what rounding invoices to whole cents added or took off.
- `bad_debt`: invoices written off as uncollectible (and not paid since).
- `refund_due:<customer>`: money a charge took for an invoice that no longer needed it (a
  payment the customer authenticated after the invoice was paid otherwise or voided), owed back
  until it is refunded (credit balance; zero once refunded).
"""

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.bulk import add_to_all, insert_all, insert_new, reserve_ids, select_where_one_of
from zoopay.db.tables import (
    balances,
    journal_accounts,
    journal_lines,
    journal_postings,
    ledger_entries,
)


class AccountKind(enum.StrEnum):
    RECEIVABLE = "receivable"
    PROCESSOR_CASH = "processor_cash"
    REVENUE = "revenue"
    TAX_PAYABLE = "tax_payable"
    CREDITS_BILLED = "credits_billed"
    CREDITS_SOLD = "credits_sold"
    ROUNDING = "rounding"
    BAD_DEBT = "bad_debt"
    REFUND_DUE = "refund_due"


class PostingKind(enum.StrEnum):
    INVOICE_ISSUED = "invoice_issued"
    CHARGE = "charge"
    CREDIT_PURCHASE = "credit_purchase"
    REFUND = "refund"
    WRITE_OFF = "write_off"
    # An uncollectible invoice paid after all: its write-off undone, before the charge posts.
    WRITE_OFF_REVERSED = "write_off_reversed"
    VOID = "void"


@dataclass(frozen=True)
class Account:
    kind: AccountKind
    customer_id: str | None = None

    @property
    def id(self) -> str:
        return self.kind.value if self.customer_id is None else f"{self.kind}:{self.customer_id}"


class UnbalancedPosting(ValueError):
    """A posting whose lines do not sum to zero: a bug, never written."""


@dataclass(frozen=True)
class NewPosting:
    """A posting to write: balanced lines (micro-dollars, debits positive) and what it is for."""

    kind: PostingKind
    lines: Sequence[tuple[Account, int]]
    memo: str
    invoice_id: str | None = None
    processor_ref: str | None = None


def _moved(kind: PostingKind, lines: Sequence[tuple[Account, int]]) -> dict[Account, int]:
    """A posting's lines merged by account, zeros left out; UnbalancedPosting unless they
    sum to zero."""
    if sum(amount for _, amount in lines) != 0:
        raise UnbalancedPosting(f"{kind} posting does not sum to zero: {lines}")
    merged: dict[Account, int] = {}
    for account, amount in lines:
        merged[account] = merged.get(account, 0) + amount
    return {account: amount for account, amount in merged.items() if amount != 0}


async def post_journal(
    conn: AsyncConnection,
    *,
    kind: PostingKind,
    lines: Sequence[tuple[Account, int]],
    memo: str,
    now: datetime,
    invoice_id: str | None = None,
    processor_ref: str | None = None,
) -> int | None:
    """Write one balanced posting and move its accounts, in the caller's transaction; zero
    lines are left out, and a posting of nothing but zeros writes nothing (answers None)."""
    moved = _moved(kind, lines)
    if not moved:
        return None
    result = await conn.execute(
        insert(journal_postings)
        .values(
            kind=kind.value,
            invoice_id=invoice_id,
            processor_ref=processor_ref,
            memo=memo[:500],
            created_at=now,
        )
        .returning(journal_postings.c.id)
    )
    posting_id = int(result.scalar_one())
    # Accounts in the one order (`lock_order`), so that concurrent postings never deadlock.
    for account in sorted(moved, key=lock_order):
        await _ensure_account(conn, account, now)
        await conn.execute(
            update(journal_accounts)
            .where(journal_accounts.c.id == account.id)
            .values(
                balance_micros=journal_accounts.c.balance_micros + moved[account], updated_at=now
            )
        )
    await conn.execute(
        insert(journal_lines),
        [
            {"posting_id": posting_id, "account_id": account.id, "amount_micros": amount}
            for account, amount in moved.items()
        ],
    )
    return posting_id


async def post_posting(conn: AsyncConnection, *, posting: NewPosting, now: datetime) -> int | None:
    """`post_journal` of a NewPosting."""
    return await post_journal(
        conn,
        kind=posting.kind,
        lines=posting.lines,
        memo=posting.memo,
        now=now,
        invoice_id=posting.invoice_id,
        processor_ref=posting.processor_ref,
    )


# Locked in `lock_order` (rows are locked in the order the query reads them). FOR NO KEY
# UPDATE: the balance changes, never the id, so that a line naming the account (its foreign
# key takes a key-share lock) does not wait for another transaction moving it.
_LOCK_ACCOUNTS = (
    select(journal_accounts.c.id)
    .order_by(journal_accounts.c.customer_id.is_(None), journal_accounts.c.id)
    .with_for_update(key_share=True)
)
_EXISTING = select(journal_accounts.c.id).order_by(journal_accounts.c.id)


def lock_order(account: Account) -> tuple[bool, str]:
    """The one order every transaction locks accounts in, so that two never deadlock: a
    customer's own accounts first, then the shared ones (cash, revenue, tax ...), each by id;
    the invoice number counter comes after all of them (invoicing.service)."""
    return account.customer_id is None, account.id


async def post_journal_many(
    conn: AsyncConnection, *, postings: Sequence[NewPosting], now: datetime
) -> None:
    """`post_journal` for many postings, as a few statements whatever their number: the same
    postings, lines and account balances, in the caller's transaction."""
    shared = await write_postings(conn, postings=postings, now=now)
    await move_accounts(conn, totals=shared, now=now)


async def write_postings(
    conn: AsyncConnection, *, postings: Sequence[NewPosting], now: datetime
) -> dict[Account, int]:
    """`post_journal_many` but for the shared accounts (those of no customer): the postings and
    their lines written, the customers' own accounts moved. Answers what the shared accounts
    are still to move, for the caller to move with `move_accounts` as late in its transaction
    as it can: every chunk of a billing run moves them, and holds their locks until it commits."""
    kept = [
        (posting, moved) for posting in postings if (moved := _moved(posting.kind, posting.lines))
    ]
    if not kept:
        return {}
    ids = await reserve_ids(conn, journal_postings, len(kept))
    await insert_all(
        conn,
        journal_postings,
        [
            {
                "id": posting_id,
                "kind": posting.kind.value,
                "invoice_id": posting.invoice_id,
                "processor_ref": posting.processor_ref,
                "memo": posting.memo[:500],
                "created_at": now,
            }
            for posting_id, (posting, _) in zip(ids, kept, strict=True)
        ],
    )
    totals: dict[Account, int] = {}
    for _, moved in kept:
        for account, amount in moved.items():
            totals[account] = totals.get(account, 0) + amount
    shared = {account: amount for account, amount in totals.items() if account.customer_id is None}
    own = {account: amount for account, amount in totals.items() if account not in shared}
    # A shared account is looked for without a lock before it is made: inserting a row that
    # another transaction is moving would wait for that transaction.
    rows = await select_where_one_of(
        conn, _EXISTING, journal_accounts.c.id, sorted(a.id for a in shared)
    )
    found = {row["id"] for row in rows}
    new = [*own, *(a for a in shared if a.id not in found)]
    await insert_new(
        conn, journal_accounts, [_account_row(a, now) for a in sorted(new, key=lock_order)]
    )
    await move_accounts(conn, totals=own, now=now)
    await insert_all(
        conn,
        journal_lines,
        [
            {"posting_id": posting_id, "account_id": account.id, "amount_micros": amount}
            for posting_id, (_, moved) in zip(ids, kept, strict=True)
            for account, amount in moved.items()
        ],
    )
    return shared


async def move_accounts(
    conn: AsyncConnection, *, totals: Mapping[Account, int], now: datetime
) -> None:
    """Add `totals` to the balances of their accounts (which exist), locked in `lock_order`."""
    if not totals:
        return
    await select_where_one_of(conn, _LOCK_ACCOUNTS, journal_accounts.c.id, [a.id for a in totals])
    await add_to_all(
        conn,
        journal_accounts,
        [{"id": a.id, "balance_micros": amount, "updated_at": now} for a, amount in totals.items()],
        add="balance_micros",
    )


def _account_row(account: Account, now: datetime) -> dict[str, object]:
    return {
        "id": account.id,
        "kind": account.kind.value,
        "customer_id": account.customer_id,
        "balance_micros": 0,
        "updated_at": now,
    }


async def _ensure_account(conn: AsyncConnection, account: Account, now: datetime) -> None:
    values = _account_row(account, now)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(dialect.insert(journal_accounts).values(values).on_conflict_do_nothing())


async def account_balance(conn: AsyncConnection, account: Account) -> int:
    query = select(journal_accounts.c.balance_micros).where(journal_accounts.c.id == account.id)
    return int((await conn.execute(query)).scalar_one_or_none() or 0)


@dataclass(frozen=True)
class JournalLine:
    posting_id: int
    kind: PostingKind
    account_id: str
    amount_micros: int
    invoice_id: str | None
    processor_ref: str | None


async def invoice_journal(conn: AsyncConnection, invoice_id: str) -> list[JournalLine]:
    """Every line posted for one invoice, in posting order."""
    query = (
        select(
            journal_lines.c.posting_id,
            journal_postings.c.kind,
            journal_lines.c.account_id,
            journal_lines.c.amount_micros,
            journal_postings.c.invoice_id,
            journal_postings.c.processor_ref,
        )
        .join(journal_postings, journal_postings.c.id == journal_lines.c.posting_id)
        .where(journal_postings.c.invoice_id == invoice_id)
        .order_by(journal_lines.c.posting_id, journal_lines.c.account_id)
    )
    return [
        JournalLine(r[0], PostingKind(r[1]), r[2], int(r[3]), r[4], r[5])
        for r in await conn.execute(query)
    ]


async def verify(conn: AsyncConnection) -> list[str]:
    """Everything that does not add up, one sentence each; empty when the books are right.

    The journal: each account equals the sum of its lines, each posting sums to zero, the trial
    balance (all lines) is zero. The bucket ledger: each balance bucket equals its entries."""
    problems: list[str] = []
    sums = (
        select(
            journal_lines.c.account_id.label("account_id"),
            func.sum(journal_lines.c.amount_micros).label("total"),
        )
        .group_by(journal_lines.c.account_id)
        .subquery()
    )
    rows = await conn.execute(
        select(journal_accounts.c.id, journal_accounts.c.balance_micros, sums.c.total)
        .outerjoin(sums, sums.c.account_id == journal_accounts.c.id)
        .order_by(journal_accounts.c.id)
    )
    for account_id, balance, total in rows:
        if int(balance) != int(total or 0):
            problems.append(
                f"journal account {account_id} holds {balance} micro-dollars,"
                f" its lines sum to {int(total or 0)}"
            )
    unbalanced = await conn.execute(
        select(journal_lines.c.posting_id, func.sum(journal_lines.c.amount_micros))
        .group_by(journal_lines.c.posting_id)
        .having(func.sum(journal_lines.c.amount_micros) != 0)
        .order_by(journal_lines.c.posting_id)
    )
    for posting_id, total in unbalanced:
        problems.append(f"journal posting {posting_id} sums to {int(total)}, not zero")
    trial = (await conn.execute(select(func.sum(journal_lines.c.amount_micros)))).scalar()
    if int(trial or 0) != 0:
        problems.append(f"the trial balance is {int(trial)} micro-dollars, not zero")
    problems.extend(await _verify_buckets(conn))
    return problems


_BUCKET_COLUMNS = {
    "monthly": balances.c.monthly_micros,
    "stable": balances.c.stable_micros,
    "total_due": balances.c.total_due_micros,
}


async def _verify_buckets(conn: AsyncConnection) -> list[str]:
    problems = []
    entry_sums = (
        select(
            ledger_entries.c.customer_id,
            ledger_entries.c.bucket,
            func.sum(ledger_entries.c.delta_micros).label("total"),
        )
        .group_by(ledger_entries.c.customer_id, ledger_entries.c.bucket)
        .subquery()
    )
    for bucket, column in _BUCKET_COLUMNS.items():
        part = entry_sums.alias(f"sums_{bucket}")
        rows = await conn.execute(
            select(balances.c.customer_kind, balances.c.customer_id, column, part.c.total)
            .outerjoin(
                part,
                (part.c.customer_id == balances.c.customer_id) & (part.c.bucket == bucket),
            )
            .where(column != func.coalesce(part.c.total, 0))
            .order_by(balances.c.customer_id)
        )
        for kind, customer_id, amount, total in rows:
            problems.append(
                f"the {bucket} balance of {kind} {customer_id} is {amount} micro-dollars,"
                f" its ledger entries sum to {int(total or 0)}"
            )
    return problems
