"""Alembic environment: runs migrations on zoopay's async engine."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy.engine import Connection

from zoopay.db.engine import Timeouts, create_engine
from zoopay.db.tables import metadata


def _sqlite_pragma(connection: Connection, pragma: str) -> list[tuple[object, ...]]:
    # On the driver's connection: SQLAlchemy's would begin a transaction first, and SQLite ignores
    # `foreign_keys` inside one.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
        return list(cursor.fetchall())
    finally:
        cursor.close()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite rebuilds a table to change it (batch mode), and dropping the old one with foreign
    keys on would cascade to, or be refused by, the rows that refer to it. So they are off while
    the migrations run, as SQLite's own procedure for schema changes says;
    `_check_references` checks every reference before the transaction commits."""
    if connection.dialect.name != "sqlite":
        yield
        return
    _sqlite_pragma(connection, "foreign_keys=OFF")
    try:
        yield
    finally:
        _sqlite_pragma(connection, "foreign_keys=ON")


def _check_references(connection: Connection) -> None:
    if connection.dialect.name == "sqlite" and (
        broken := _sqlite_pragma(connection, "foreign_key_check")
    ):
        raise RuntimeError(f"the migrations left rows whose references are gone: {broken}")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        # Alembic assumes pysqlite's own transaction handling, which commits before DDL; zoopay's
        # engine turns that off and begins its own transactions (db.engine), so on SQLite as on
        # PostgreSQL an upgrade commits whole or not at all.
        transactional_ddl=True,
    )
    with _sqlite_foreign_keys_off(connection), context.begin_transaction():
        context.run_migrations()
        _check_references(connection)


async def _run_online(url: str) -> None:
    # A migration may rewrite a large table: no request-sized statement timeout.
    engine = create_engine(url, timeouts=Timeouts(statement=3600))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online(context.config.get_main_option("sqlalchemy.url") or ""))
