"""Connecting to SQLite or PostgreSQL from one plain URL."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """`sqlite:///x.db` and `postgresql://...` name the async drivers zoopay runs on."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.get_backend_name())
    if driver is None:
        raise ValueError(f"unsupported database URL {parsed.render_as_string()!r}")
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    full_url = async_url(url)
    if full_url.startswith("sqlite"):
        engine = create_async_engine(full_url, connect_args={"timeout": 30})
        _serialize_sqlite_writers(engine)
        return engine
    return create_async_engine(full_url, pool_size=pool_size, max_overflow=pool_size)


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    # SQLite has one writer; BEGIN IMMEDIATE takes its lock up front so that a
    # read-then-write transaction can never lose its update to another one.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    if is_sqlite(engine):
        async with engine.begin() as conn:
            yield conn
        return
    # asyncpg's own transaction, begun at once: SQLAlchemy's adapter would send BEGIN only with
    # its first statement, and db.bulk sends statements to asyncpg directly.
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        async with (await driver(conn)).transaction():
            yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: each statement sees the latest commit, and no BEGIN or
    COMMIT round trips are paid. Whatever must be consistent goes in one statement."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a PostgreSQL `conn`, in the same transaction."""
    return (await conn.get_raw_connection()).driver_connection
