"""Looking at the whole database from a test."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.db.tables import metadata


async def dump(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in key order: equal before and after means nothing changed."""
    async with engine.connect() as conn:
        snapshot = {}
        for table in metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            snapshot[table.name] = [dict(row) for row in (await conn.execute(query)).mappings()]
        return snapshot
