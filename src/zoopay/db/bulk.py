"""Statements over many rows at once, with SQL text that does not depend on how many.

On PostgreSQL the rows travel as one array per column (`unnest`, `= ANY`), sent by asyncpg
as a statement prepared once per connection, or for many new rows by COPY; SQLite gets the
portable forms (`IN`, multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`, executemany)
through SQLAlchemy.
"""

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, any_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

from zoopay.db.engine import driver

# From how many rows `insert_all` sends them by COPY rather than as arrays.
COPY_FROM = 100


def is_postgresql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def select_where_one_of(
    conn: AsyncConnection, query: Select[Any], column: ColumnElement[Any], values: Sequence[Any]
) -> Sequence[Mapping[str, Any]]:
    """The rows of `query` whose `column` is one of `values`. On PostgreSQL the query (built
    once, at import) is compiled once and sent by asyncpg, rows and all, without SQLAlchemy."""
    if is_postgresql(conn):
        return await (await driver(conn)).fetch(_compiled_any(query, column), list(values))  # type: ignore[no-any-return]
    return list((await conn.execute(query.where(column.in_(values)))).mappings())


async def select_by(
    conn: AsyncConnection, query: Select[Any], column: ColumnElement[Any], values: Sequence[Any]
) -> dict[Any, Mapping[str, Any]]:
    """`select_where_one_of`'s rows by their `column` (a key: one row each)."""
    name = str(column.key)
    return {row[name]: row for row in await select_where_one_of(conn, query, column, values)}


async def insert_new(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> set[str]:
    """Insert the rows whose primary key is new; return those keys."""
    if not rows:
        return set()
    key = next(iter(table.primary_key.columns)).name
    if is_postgresql(conn):
        sql = _unnest_insert(table, tuple(rows[0]), f" ON CONFLICT DO NOTHING RETURNING {key}")
        found = await (await driver(conn)).fetch(sql, *_columns_of(rows))
        return {str(row[0]) for row in found}
    statement = sqlite.insert(table).on_conflict_do_nothing().returning(table.c[key])
    result = await conn.execute(statement, list(rows))
    return {str(value) for value in result.scalars()}


async def insert_all(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all name the same columns."""
    if not rows:
        return
    if not is_postgresql(conn):
        await conn.execute(table.insert(), list(rows))
    elif len(rows) < COPY_FROM:
        sql = _unnest_insert(table, tuple(rows[0]), "")
        await (await driver(conn)).execute(sql, *_columns_of(rows))
    else:
        # COPY: the fastest way in for many rows, encoded without the per-element checks that
        # an array parameter costs (about a fifth of a billing run's time in asyncpg). Not for
        # a few: it takes a second round trip, which a recorded call would feel.
        names = list(rows[0])
        records = [tuple(row[name] for name in names) for row in rows]
        await (await driver(conn)).copy_records_to_table(table.name, records=records, columns=names)


async def update_all(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    key: str | tuple[str, ...] = "id",
) -> None:
    """Set, on each row named by `key` (a column, or several), the other columns given (the
    same ones in every row)."""
    await _update_all(conn, table, rows, _keys(key), add=None)


async def add_to_all(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    add: str,
    key: str = "id",
) -> None:
    """`update_all`, but the column `add` grows by the row's amount instead of being set (one
    row per key: the amounts of a key are summed by the caller)."""
    await _update_all(conn, table, rows, (key,), add=add)


def _keys(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else key


async def _update_all(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, ...],
    *,
    add: str | None,
) -> None:
    if not rows:
        return
    names = tuple(rows[0])
    if is_postgresql(conn):
        sql = _unnest_update(table, names, keys, add)
        await (await driver(conn)).execute(sql, *_columns_of(rows))
        return
    renamed = [{f"new_{name}": value for name, value in row.items()} for row in rows]
    changes: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names if name not in keys}
    if add is not None:
        changes[add] = table.c[add] + bindparam(f"new_{add}")
    statement = update(table).values(changes)
    for name in keys:
        statement = statement.where(table.c[name] == bindparam(f"new_{name}"))
    await conn.execute(statement, renamed)


async def reserve_ids(conn: AsyncConnection, table: Table, count: int) -> list[int]:
    """`count` new values of `table`'s integer `id`, for rows inserted in this transaction
    that other rows must name before the insert answers (PostgreSQL: from its sequence;
    SQLite: past the largest, safe under its single writer lock, which the caller holds)."""
    if count == 0:
        return []
    if is_postgresql(conn):
        sql = (
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id'))"
            " FROM generate_series(1, $1)"
        )
        return sorted(int(row[0]) for row in await (await driver(conn)).fetch(sql, count))
    largest = (await conn.execute(select(func.max(table.c.id)))).scalar()
    first = int(largest or 0) + 1
    return list(range(first, first + count))


@cache
def _compiled_any(query: Select[Any], column: ColumnElement[Any]) -> str:
    values = bindparam("values", type_=postgresql.ARRAY(column.type))
    return str(query.where(column == any_(values)).compile(dialect=_ASYNCPG))


def _columns_of(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    names = list(rows[0])
    return [[row[name] for row in rows] for name in names]


@cache
def _unnest_insert(table: Table, names: tuple[str, ...], suffix: str) -> str:
    arrays = ", ".join(f"${n}::{_pg_type(table, name)}[]" for n, name in enumerate(names, 1))
    return f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}){suffix}"


@cache
def _unnest_update(
    table: Table, names: tuple[str, ...], keys: tuple[str, ...], add: str | None
) -> str:
    arrays = ", ".join(f"${n}::{_pg_type(table, name)}[]" for n, name in enumerate(names, 1))
    changes = ", ".join(
        f"{name} = {table.name}.{name} + new.{name}" if name == add else f"{name} = new.{name}"
        for name in names
        if name not in keys
    )
    same = " AND ".join(f"{table.name}.{name} = new.{name}" for name in keys)
    return (
        f"UPDATE {table.name} SET {changes} FROM unnest({arrays}) AS new({', '.join(names)})"
        f" WHERE {same}"
    )


_POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
# Compiles to numbered parameters, as asyncpg takes them.
_ASYNCPG: Dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


def _pg_type(table: Table, name: str) -> str:
    return table.c[name].type.compile(dialect=_POSTGRESQL)
