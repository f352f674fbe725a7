"""Credits only from real grants: what enters a monthly bucket in one billing period.

Within a period, the credits entering a customer's monthly bucket in total (the period's first
grant, plan changes) are at most the largest monthly grant of any plan it held in that period.
Each period's row in `monthly_grants` records what it granted so far; it is read and written
under the balance row lock, in the transaction that writes the ledger entry, so the bound
holds across processes, retries and restarts. Staff changes of a balance are not grants.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.catalog.service import Plan
from zoopay.db.tables import monthly_grants
from zoopay.ledger.service import Balance, Bucket, Posting, set_buckets


@dataclass(frozen=True)
class PeriodGrant:
    """What one period has granted so far, and the largest grant of a plan held in it."""

    granted_micros: int
    largest_grant_micros: int
    stored: bool

    def headroom(self, plan: Plan) -> int:
        """What `plan` may still grant in this period: its grant beyond what was granted."""
        return max(0, plan.monthly_grant_micros - self.granted_micros)


NOTHING_GRANTED = PeriodGrant(0, 0, stored=False)


async def period_grant(
    conn: AsyncConnection, *, customer_id: str, period_start: datetime
) -> PeriodGrant:
    query = select(monthly_grants.c.granted_micros, monthly_grants.c.largest_grant_micros).where(
        monthly_grants.c.customer_id == customer_id,
        monthly_grants.c.period_start == period_start,
    )
    row = (await conn.execute(query)).first()
    return PeriodGrant(row[0], row[1], stored=True) if row else NOTHING_GRANTED


async def grant_new_period(
    conn: AsyncConnection,
    *,
    balance: Balance,
    plan: Plan,
    period_start: datetime,
    posting: Posting,
    now: datetime,
) -> Balance:
    """On a locked balance: a period begins, the bucket resets to the plan's grant (it does not
    accumulate), and that grant is all the period has granted."""
    grant = PeriodGrant(plan.monthly_grant_micros, plan.monthly_grant_micros, stored=False)
    await _record(
        conn, customer_id=balance.customer.id, period_start=period_start, grant=grant, now=now
    )
    return await set_buckets(
        conn,
        balance=balance,
        targets={Bucket.MONTHLY: grant.granted_micros},
        posting=posting,
        now=now,
    )


async def grant_plan_change(
    conn: AsyncConnection,
    *,
    balance: Balance,
    old: Plan | None,
    new: Plan,
    period_start: datetime,
    posting: Posting,
    now: datetime,
) -> Balance:
    """On a locked balance: the monthly bucket after a change of plan within a period.

    An upgrade tops the bucket up towards the new grant, by at most what the new plan grants
    beyond what this period already granted; a downgrade caps the bucket at the new grant.
    Flipping back and forth therefore grants nothing more.
    """
    customer_id = balance.customer.id
    grant = await period_grant(conn, customer_id=customer_id, period_start=period_start)
    remaining = balance.monthly_micros
    if old is None or new.rank > old.rank:
        target = max(remaining, min(new.monthly_grant_micros, remaining + grant.headroom(new)))
    else:
        target = min(remaining, new.monthly_grant_micros)
    after = PeriodGrant(
        grant.granted_micros + max(0, target - remaining),
        max(grant.largest_grant_micros, new.monthly_grant_micros),
        grant.stored,
    )
    await _record(conn, customer_id=customer_id, period_start=period_start, grant=after, now=now)
    return await set_buckets(
        conn, balance=balance, targets={Bucket.MONTHLY: target}, posting=posting, now=now
    )


async def _record(
    conn: AsyncConnection,
    *,
    customer_id: str,
    period_start: datetime,
    grant: PeriodGrant,
    now: datetime,
) -> None:
    values = {
        "granted_micros": grant.granted_micros,
        "largest_grant_micros": grant.largest_grant_micros,
        "updated_at": now,
    }
    if grant.stored:
        await conn.execute(
            update(monthly_grants)
            .where(
                monthly_grants.c.customer_id == customer_id,
                monthly_grants.c.period_start == period_start,
            )
            .values(**values)
        )
    else:
        await conn.execute(
            insert(monthly_grants).values(
                customer_id=customer_id, period_start=period_start, **values
            )
        )
