"""`zoopay billing run`: close every ended period, invoice it, charge it, dun what failed.

Each step is resumable: what is done is recorded in the step's own transactions, and a rerun
(after a crash, or simply a second run) picks up only what is left, so nobody is billed twice.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.billing.close import claim, customers_to_close
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading, transaction

# Customers per claiming transaction: short locks, few statements per customer.
CLOSE_CHUNK = 1000


@dataclass
class RunSummary:
    closed: int = 0
    nothing_due: int = 0
    to_invoice: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, int]:
        return {
            "closed": self.closed,
            "nothing_due": self.nothing_due,
            "to_invoice": self.to_invoice,
            **self.extra,
        }


async def close_periods(
    engine: AsyncEngine, catalog: Catalog, *, at: datetime, chunk: int = CLOSE_CHUNK
) -> RunSummary:
    """Claim every ended period, `chunk` customers per transaction."""
    summary = RunSummary()
    async with reading(engine) as conn:
        customers = await customers_to_close(conn, at=at)
    for first in range(0, len(customers), chunk):
        async with transaction(engine) as conn:
            closed = await claim(conn, catalog, customers[first : first + chunk], at=at)
        summary.closed += len(closed)
        summary.nothing_due += sum(1 for close in closed if close.owes_nothing)
    summary.to_invoice = summary.closed - summary.nothing_due
    return summary


async def run_billing(engine: AsyncEngine, catalog: Catalog, *, at: datetime) -> RunSummary:
    return await close_periods(engine, catalog, at=at)
