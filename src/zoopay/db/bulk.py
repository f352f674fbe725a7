"""Statements over many rows at once, with SQL text that does not depend on how many.

On PostgreSQL the rows travel as one array per column (`unnest`, `= ANY`), sent by asyncpg
as a statement prepared once per connection, or for many new rows by COPY; SQLite gets the
portable forms (`IN`, multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING`, executemany)
through SQLAlchemy.
"""

from collections.abc import Mapping, Sequence
from functools import cache
from operator import itemgetter
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
    once, at import) is compiled once and sent by asyncpg, rows and all, without SQLAlchemy.
    No rows for no values, without a round trip."""
    if not values:
        return []
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
        shared, parameters = _parameters(rows, ())
        suffix = f" ON CONFLICT DO NOTHING RETURNING {key}"
        sql = _unnest_insert(table, tuple(rows[0]), shared, suffix)
        found = await (await driver(conn)).fetch(sql, *parameters)
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
        shared, parameters = _parameters(rows, ())
        sql = _unnest_insert(table, tuple(rows[0]), shared, "")
        await (await driver(conn)).execute(sql, *parameters)
    else:
        # COPY: the fastest way in for many rows, encoded without the per-element checks that
        # an array parameter costs (about a fifth of a billing run's time in asyncpg). Not for
        # a few: it takes a second round trip, which a recorded call would feel.
        names = list(rows[0])
        record = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        records = [record(row) for row in rows]
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
        shared, parameters = _parameters(rows, keys)
        sql = _unnest_update(table, names, keys, add, shared)
        await (await driver(conn)).execute(sql, *parameters)
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


def _parameters(
    rows: Sequence[dict[str, Any]], keys: tuple[str, ...]
) -> tuple[tuple[bool, ...], list[Any]]:
    """Each column's values as one array, or, where every row holds the same value (a status,
    an `updated_at`), as that value alone (`True` in the first answer): asyncpg encodes an
    array element by element, and such columns were half of what a billing run sent. Keys stay
    arrays, and so does the first column when every one is shared (unnest counts the rows)."""
    names = list(rows[0])
    columns = [[row[name] for row in rows] for name in names]
    shared = [
        len(rows) > 1 and name not in keys and column.count(column[0]) == len(column)
        for name, column in zip(names, columns, strict=True)
    ]
    if all(shared):
        shared[0] = False
    parameters = [column[0] if one else column for column, one in zip(columns, shared, strict=True)]
    return tuple(shared), parameters


def _sources(
    table: Table, names: tuple[str, ...], shared: tuple[bool, ...]
) -> tuple[list[str], str]:
    """For `_parameters`: the value of each column, as `new`'s or as its one parameter, and the
    `unnest(...) AS new(...)` that the array columns come from."""
    values, arrays, aliases = [], [], []
    for n, (name, one) in enumerate(zip(names, shared, strict=True), 1):
        kind = _pg_type(table, name)
        values.append(f"${n}::{kind}" if one else f'new."{name}"')
        if not one:
            arrays.append(f"${n}::{kind}[]")
            aliases.append(f'"{name}"')
    return values, f"unnest({', '.join(arrays)}) AS new({', '.join(aliases)})"


@cache
def _unnest_insert(
    table: Table, names: tuple[str, ...], shared: tuple[bool, ...], suffix: str
) -> str:
    values, source = _sources(table, names, shared)
    columns = ", ".join(f'"{name}"' for name in names)
    return f"INSERT INTO {table.name} ({columns}) SELECT {', '.join(values)} FROM {source}{suffix}"


@cache
def _unnest_update(
    table: Table,
    names: tuple[str, ...],
    keys: tuple[str, ...],
    add: str | None,
    shared: tuple[bool, ...],
) -> str:
    values, source = _sources(table, names, shared)
    value_of = dict(zip(names, values, strict=True))
    changes = ", ".join(
        f'"{name}" = {table.name}."{name}" + {value_of[name]}'
        if name == add
        else f'"{name}" = {value_of[name]}'
        for name in names
        if name not in keys
    )
    same = " AND ".join(f'{table.name}."{name}" = new."{name}"' for name in keys)
    return f"UPDATE {table.name} SET {changes} FROM {source} WHERE {same}"


_POSTGRESQL: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
# Compiles to numbered parameters, as asyncpg takes them.
_ASYNCPG: Dialect = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


def _pg_type(table: Table, name: str) -> str:
    return table.c[name].type.compile(dialect=_POSTGRESQL)
