"""Migration 0003 on a database that already has customers: each subscription's current period
gets a record of what its ledger shows granted since the period began."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import insert, select

from zoopay.db.engine import create_engine, transaction
from zoopay.db.migrate import alembic_config
from zoopay.db.tables import ledger_entries, monthly_grants, subscriptions

ANCHOR = datetime(2026, 1, 15, 12, tzinfo=UTC)
PERIOD = datetime(2026, 2, 15, 12, tzinfo=UTC)


def entry(
    customer_id: str, bucket: str, delta: int, reason: str, at: datetime
) -> dict[str, object]:
    return {
        "customer_id": customer_id,
        "bucket": bucket,
        "delta_micros": delta,
        "balance_after_micros": 0,  # not read by the migration
        "actor": "test",
        "reason": reason,
        "created_at": at,
    }


def subscription(customer_id: str, period_start: datetime) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "customer_kind": "user",
        "customer_id": customer_id,
        "tier": "pro",
        "pay_annually": False,
        "anchor_at": ANCHOR,
        "period_start": period_start,
        "created_at": ANCHOR,
        "updated_at": PERIOD,
    }


async def test_0003_records_what_the_current_period_granted(own_database: str) -> None:
    config = alembic_config(own_database)
    await asyncio.to_thread(command.upgrade, config, "0002")
    spender, idle = str(uuid.uuid4()), str(uuid.uuid4())
    hour = timedelta(hours=1)
    engine = create_engine(own_database)
    try:
        async with transaction(engine) as conn:
            await conn.execute(
                insert(subscriptions), [subscription(spender, PERIOD), subscription(idle, ANCHOR)]
            )
            await conn.execute(
                insert(ledger_entries),
                [
                    entry(spender, "monthly", 10_000_000, "grant", ANCHOR),  # an earlier period
                    entry(idle, "monthly", 10_000_000, "grant", ANCHOR),
                    entry(spender, "monthly", 7_000_000, "refresh", PERIOD + hour),
                    entry(spender, "monthly", 90_000_000, "plan_change", PERIOD + 2 * hour),
                    entry(spender, "monthly", -90_000_000, "plan_change", PERIOD + 3 * hour),
                    entry(spender, "monthly", 500_000_000, "staff_change", PERIOD + 4 * hour),
                    entry(spender, "stable", 3_000_000, "plan_change", PERIOD + 4 * hour),
                    entry(spender, "monthly", -1_000_000, "api_call", PERIOD + 5 * hour),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "0003")
        async with engine.connect() as conn:
            rows = (await conn.execute(select(monthly_grants))).mappings().all()
        got = {
            row["customer_id"]: (
                row["period_start"],
                row["granted_micros"],
                row["largest_grant_micros"],
            )
            for row in rows
        }
        assert got == {
            spender: (PERIOD, 97_000_000, 97_000_000),
            idle: (ANCHOR, 10_000_000, 10_000_000),
        }
        await asyncio.to_thread(command.downgrade, config, "0002")
        await asyncio.to_thread(command.upgrade, config, "head")
    finally:
        await engine.dispose()
