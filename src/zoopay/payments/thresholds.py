"""The aggregate-usage collection threshold: unpaid usage that makes billing invoice early.

The effective amount is staff's (admin) if set, else the customer's own, else the default.
Every change bumps `version`; a change names the version it read, and a stale one is a 409,
so that two editors never silently overwrite each other.
"""

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.tables import usage_thresholds
from zoopay.errors import BadRequest, Conflict
from zoopay.ledger.service import Customer
from zoopay.money import MICROS_PER_DOLLAR, format_micros
from zoopay.payments.service import insert_unless_present

DEFAULT_MICROS = 100 * MICROS_PER_DOLLAR


@dataclass(frozen=True)
class Bounds:
    minimum_micros: int
    maximum_micros: int

    def check(self, amount_micros: int, who: str) -> None:
        if not self.minimum_micros <= amount_micros <= self.maximum_micros:
            raise BadRequest(
                f"amount must be between {format_micros(self.minimum_micros)} and "
                f"{format_micros(self.maximum_micros)} USD for {who}"
            )


CUSTOMER_BOUNDS = Bounds(10 * MICROS_PER_DOLLAR, 10_000 * MICROS_PER_DOLLAR)
ADMIN_BOUNDS = Bounds(1 * MICROS_PER_DOLLAR, 1_000_000 * MICROS_PER_DOLLAR)


@dataclass(frozen=True)
class Authority:
    """Who sets an amount, in their own column and within their own bounds: the customer, or
    staff (admin), whose amount wins over the customer's."""

    who: str  # as a 400 names them: "... USD for a customer"
    column: str  # theirs in usage_thresholds
    bounds: Bounds


CUSTOMER_AUTHORITY = Authority("a customer", "customer_amount_micros", CUSTOMER_BOUNDS)
ADMIN_AUTHORITY = Authority("staff", "admin_amount_micros", ADMIN_BOUNDS)


class ThresholdSource(enum.StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    SYSTEM_DEFAULT = "system_default"


@dataclass(frozen=True)
class UsageThreshold:
    customer: Customer
    customer_amount_micros: int | None
    admin_amount_micros: int | None
    version: int

    @property
    def source(self) -> ThresholdSource:
        return self._in_force[0]

    @property
    def effective_micros(self) -> int:
        return self._in_force[1]

    @property
    def _in_force(self) -> tuple[ThresholdSource, int]:
        """Whose amount is in force, and that amount: staff's if set, else the customer's,
        else the default."""
        if self.admin_amount_micros is not None:
            return ThresholdSource.ADMIN, self.admin_amount_micros
        if self.customer_amount_micros is not None:
            return ThresholdSource.CUSTOMER, self.customer_amount_micros
        return ThresholdSource.SYSTEM_DEFAULT, DEFAULT_MICROS


async def usage_threshold(conn: AsyncConnection, *, customer: Customer) -> UsageThreshold:
    row = (
        (
            await conn.execute(
                select(usage_thresholds).where(usage_thresholds.c.customer_id == customer.id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return UsageThreshold(customer, None, None, 0)
    return UsageThreshold(
        customer, row["customer_amount_micros"], row["admin_amount_micros"], row["version"]
    )


async def effective_usage_threshold(conn: AsyncConnection, *, customer: Customer) -> int:
    """The unpaid usage, in micro-dollars, at which billing issues the early invoice."""
    return (await usage_threshold(conn, customer=customer)).effective_micros


async def set_threshold(
    conn: AsyncConnection,
    *,
    authority: Authority,
    customer: Customer,
    amount_micros: int | None,
    expected_version: int,
    now: datetime,
) -> UsageThreshold:
    """`authority`'s own amount (None: theirs removed, the customer's back to the default);
    409 if `expected_version` is not the current one, 400 outside the authority's bounds."""
    if amount_micros is not None:
        authority.bounds.check(amount_micros, authority.who)
    return await _write(conn, customer, {authority.column: amount_micros}, expected_version, now)


async def _write(
    conn: AsyncConnection,
    customer: Customer,
    values: dict[str, int | None],
    expected_version: int,
    now: datetime,
) -> UsageThreshold:
    current = await usage_threshold(conn, customer=customer)
    if expected_version != current.version:
        raise Conflict(
            f"expected_version {expected_version} is stale: the threshold is at version "
            f"{current.version} (read it again)"
        )
    version = current.version + 1
    if current.version == 0 and not await _exists(conn, customer):
        row: dict[str, object] = {
            "customer_id": customer.id,
            "customer_kind": customer.kind,
            "customer_amount_micros": None,
            "admin_amount_micros": None,
            "version": version,
            "updated_at": now,
        }
        if not await insert_unless_present(conn, usage_thresholds, {**row, **values}):
            raise Conflict("the threshold changed meanwhile: read it again")
    else:
        result = await conn.execute(
            update(usage_thresholds)
            .where(
                usage_thresholds.c.customer_id == customer.id,
                usage_thresholds.c.version == current.version,
            )
            .values(version=version, updated_at=now, **values)
        )
        if result.rowcount != 1:
            raise Conflict("the threshold changed meanwhile: read it again")
    return await usage_threshold(conn, customer=customer)


async def _exists(conn: AsyncConnection, customer: Customer) -> bool:
    found = (
        await conn.execute(
            select(usage_thresholds.c.customer_id).where(
                usage_thresholds.c.customer_id == customer.id
            )
        )
    ).first()
    return found is not None
