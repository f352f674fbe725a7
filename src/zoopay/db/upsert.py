"""Inserts that skip rows whose key exists: `INSERT ... ON CONFLICT DO NOTHING RETURNING`,
which PostgreSQL and SQLite (3.35+) both speak, each through its own dialect."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_new(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> set[str]:
    """Insert the rows whose primary key is new; return those keys."""
    if not rows:
        return set()
    key = next(iter(table.primary_key.columns))
    # One statement compiled once and cached; SQLAlchemy sends the rows in multi-row pages.
    statement: postgresql.Insert | sqlite.Insert
    if conn.dialect.name == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).on_conflict_do_nothing()
    result = await conn.execute(statement.returning(key), list(rows))
    return {str(value) for value in result.scalars()}
