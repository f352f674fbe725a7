"""Balances and the append-only ledger behind them.

Every change to a bucket writes a ledger entry in the same transaction, so that for every
customer and bucket the entries sum to the balance.
"""

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.bulk import insert_all, select_where_one_of, update_all
from zoopay.db.tables import balances, ledger_entries
from zoopay.errors import BadRequest, NotFound
from zoopay.money import MAX_BALANCE_MICROS, format_micros
from zoopay.records import record_of

CustomerKind = Literal["user", "org"]


@dataclass(frozen=True)
class Customer:
    """Whoever holds a balance: a user or an org."""

    kind: CustomerKind
    id: str


class Bucket(enum.StrEnum):
    MONTHLY = "monthly"
    STABLE = "stable"
    TOTAL_DUE = "total_due"


class Reason(enum.StrEnum):
    GRANT = "grant"
    REFRESH = "refresh"
    STAFF_CHANGE = "staff_change"
    PLAN_CHANGE = "plan_change"
    API_CALL = "api_call"
    # Money movement (zoopay.invoicing): reference is the invoice id.
    CREDIT_PURCHASE = "credit_purchase"
    INVOICE_PAID = "invoice_paid"
    REFUND = "refund"


_COLUMN = {
    Bucket.MONTHLY: "monthly_micros",
    Bucket.STABLE: "stable_micros",
    Bucket.TOTAL_DUE: "total_due_micros",
}


@dataclass(frozen=True)
class Balance:
    id: str
    customer: Customer
    monthly_micros: int
    stable_micros: int
    total_due_micros: int
    created_at: datetime
    updated_at: datetime

    def amount(self, bucket: Bucket) -> int:
        return int(getattr(self, _COLUMN[bucket]))


@dataclass(frozen=True)
class Posting:
    """Why a balance moves and who moved it, recorded on each ledger entry."""

    reason: Reason
    actor: str
    reference: str | None = None
    # A person's words on why (a staff change made in the console); None from the API.
    note: str | None = None


async def open_balance(conn: AsyncConnection, *, customer: Customer, now: datetime) -> Balance:
    """A zero balance for a new customer."""
    balance_id = str(uuid.uuid4())
    await conn.execute(
        insert(balances).values(
            id=balance_id,
            customer_kind=customer.kind,
            customer_id=customer.id,
            monthly_micros=0,
            stable_micros=0,
            total_due_micros=0,
            created_at=now,
            updated_at=now,
        )
    )
    return Balance(balance_id, customer, 0, 0, 0, now, now)


async def get_balance(conn: AsyncConnection, *, customer: Customer) -> Balance:
    return await _select_balance(conn, customer=customer, for_update=False)


async def lock_balance(conn: AsyncConnection, *, customer: Customer) -> Balance:
    """Read a balance and hold it until the transaction ends (FOR UPDATE on PostgreSQL;
    SQLite transactions already hold the database's single write lock)."""
    return await _select_balance(conn, customer=customer, for_update=True)


async def _select_balance(
    conn: AsyncConnection, *, customer: Customer, for_update: bool
) -> Balance:
    query = select(balances).where(balances.c.customer_id == customer.id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no balance for {customer.kind} {customer.id}")
    return balance_of_row(customer, row)


_LOCK_BALANCES = select(balances).order_by(balances.c.customer_id).with_for_update()


async def lock_balances(
    conn: AsyncConnection, *, customers: Iterable[Customer]
) -> dict[Customer, Balance]:
    """`lock_balance` for many, in one statement, locked in customer id order (the order every
    batch takes them in, so that two never deadlock); NotFound if one has none."""
    by_id = {customer.id: customer for customer in customers}
    rows = await select_where_one_of(conn, _LOCK_BALANCES, balances.c.customer_id, sorted(by_id))
    found = {
        by_id[row["customer_id"]]: balance_of_row(by_id[row["customer_id"]], row) for row in rows
    }
    for customer in by_id.values():
        if customer not in found:
            raise NotFound(f"no balance for {customer.kind} {customer.id}")
    return found


def balance_of_row(customer: Customer, row: Mapping[Any, Any]) -> Balance:
    """A balance from a row of `balances` (or of a query selecting all its columns)."""
    return record_of(Balance, row, customer=customer)


async def set_buckets(
    conn: AsyncConnection,
    *,
    balance: Balance,
    targets: dict[Bucket, int],
    posting: Posting,
    now: datetime,
) -> Balance:
    """Move buckets of a locked balance to absolute amounts, one ledger entry per change."""
    deltas = {b: amount - balance.amount(b) for b, amount in targets.items()}
    return await post(conn, balance=balance, deltas=deltas, posting=posting, now=now)


async def post(
    conn: AsyncConnection,
    *,
    balance: Balance,
    deltas: dict[Bucket, int],
    posting: Posting,
    now: datetime,
) -> Balance:
    """Apply deltas to a locked balance and record them; zero deltas write nothing."""
    [after] = await post_batch(conn, work=[(balance, [(deltas, posting)])], now=now)
    return after


async def post_batch(
    conn: AsyncConnection,
    *,
    work: list[tuple[Balance, list[tuple[dict[Bucket, int], Posting]]]],
    now: datetime,
) -> list[Balance]:
    """Movements on many locked balances: one UPDATE statement and one INSERT for all."""
    results, changed, entries = [], [], []
    for balance, movements in work:
        after, balance_entries = _apply(balance, movements, now)
        results.append(after)
        if balance_entries:
            changed.append(after)
            entries.extend(balance_entries)
    columns = ("monthly_micros", "stable_micros", "total_due_micros", "updated_at")
    await update_all(
        conn, balances, [{"id": b.id, **{c: getattr(b, c) for c in columns}} for b in changed]
    )
    await insert_all(conn, ledger_entries, entries)
    return results


def _apply(
    balance: Balance, movements: list[tuple[dict[Bucket, int], Posting]], now: datetime
) -> tuple[Balance, list[dict[str, object]]]:
    amounts = {bucket: balance.amount(bucket) for bucket in Bucket}
    entries = []
    for deltas, posting in movements:
        for bucket, delta in deltas.items():
            if delta == 0:
                continue
            amounts[bucket] += delta
            entries.append(_entry(balance.customer, bucket, delta, amounts[bucket], posting, now))
    if not entries:
        return balance, []
    for bucket, amount in amounts.items():
        if abs(amount) > MAX_BALANCE_MICROS:
            raise BadRequest(
                f"this would take the {bucket.value} balance of {balance.customer.kind}"
                f" {balance.customer.id} past {format_micros(MAX_BALANCE_MICROS)} USD,"
                " the most a balance holds"
            )
    after = replace(
        balance,
        monthly_micros=amounts[Bucket.MONTHLY],
        stable_micros=amounts[Bucket.STABLE],
        total_due_micros=amounts[Bucket.TOTAL_DUE],
        updated_at=now,
    )
    return after, entries


def _entry(
    customer: Customer, bucket: Bucket, delta: int, after: int, posting: Posting, now: datetime
) -> dict[str, object]:
    return {
        "customer_id": customer.id,
        "bucket": bucket.value,
        "delta_micros": delta,
        "balance_after_micros": after,
        "actor": posting.actor,
        "reason": posting.reason.value,
        "reference": posting.reference,
        "note": posting.note,
        "created_at": now,
    }


async def ledger_sums(conn: AsyncConnection, *, customer: Customer) -> dict[Bucket, int]:
    """What the ledger says each bucket holds; equal to the balance, always."""
    rows = await conn.execute(
        select(ledger_entries.c.bucket, func.coalesce(func.sum(ledger_entries.c.delta_micros), 0))
        .where(ledger_entries.c.customer_id == customer.id)
        .group_by(ledger_entries.c.bucket)
    )
    sums = {bucket: 0 for bucket in Bucket}
    for bucket, total in rows:
        sums[Bucket(bucket)] = int(total)
    return sums


@dataclass(frozen=True)
class Entry:
    id: int
    customer_id: str
    bucket: Bucket
    delta_micros: int
    balance_after_micros: int
    actor: str
    reason: Reason
    reference: str | None
    created_at: datetime
    note: str | None = None


async def list_entries(
    conn: AsyncConnection, *, customer: Customer, limit: int, before_id: int | None
) -> list[Entry]:
    """A customer's entries, newest first, `limit` of them, older than `before_id`."""
    query = (
        select(ledger_entries)
        .where(ledger_entries.c.customer_id == customer.id)
        .order_by(ledger_entries.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(ledger_entries.c.id < before_id)
    return [
        Entry(**{**row, "bucket": Bucket(row["bucket"]), "reason": Reason(row["reason"])})
        for row in (await conn.execute(query)).mappings()
    ]
