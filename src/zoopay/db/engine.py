"""Connecting to SQLite or PostgreSQL from one plain URL, with every wait on the database
bounded: a database that is down or hung makes a request fail fast, never hang."""

import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy.exc
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


@dataclass(frozen=True)
class Timeouts:
    """The longest zoopay waits on its database, in seconds, before giving up."""

    connect: float = 2.0  # to open a connection (PostgreSQL)
    statement: float = 2.0  # for one statement (PostgreSQL)
    pool: float = 2.0  # for a free connection of the pool
    # For SQLite's write lock: waiting for it is how SQLite serializes writers, so under load a
    # request waits longer than for a PostgreSQL statement (2 s made writers starve, measured).
    sqlite_lock: float = 10.0


def create_engine(url: str, pool_size: int = 20, timeouts: Timeouts | None = None) -> AsyncEngine:
    limits = timeouts or Timeouts()
    full_url = async_url(url)
    if full_url.startswith("sqlite"):
        engine = create_async_engine(full_url, connect_args={"timeout": limits.sqlite_lock})
        _serialize_sqlite_writers(engine, limits.sqlite_lock)
        return engine
    statement_ms = str(int(limits.statement * 1000))
    return create_async_engine(
        full_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=limits.pool,
        # A pooled connection whose server went away is replaced on checkout, so the server
        # recovers by itself when the database comes back.
        pool_pre_ping=True,
        connect_args={
            "timeout": limits.connect,
            # The client stops waiting (a hung server or network) and the server stops working
            # (a statement stuck behind a lock) after the same time.
            "command_timeout": limits.statement,
            "server_settings": {"statement_timeout": statement_ms},
        },
    )


def _serialize_sqlite_writers(engine: AsyncEngine, busy_seconds: float) -> None:
    # SQLite has one writer; BEGIN IMMEDIATE takes its lock up front so that a
    # read-then-write transaction can never lose its update to another one.
    busy_ms = int(busy_seconds * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
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


# What a database that is down, unreachable, hung or saturated raises, as the error itself or
# as the cause under SQLAlchemy's wrapper.
_UNAVAILABLE = (
    TimeoutError,  # asyncpg's command and connect timeouts
    ConnectionError,  # refused, reset, closed by the server
    socket.gaierror,  # a host name that does not resolve
    sqlalchemy.exc.TimeoutError,  # no free connection in the pool in time
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", a cancelled command still in progress
    asyncpg.QueryCanceledError,  # the server's statement_timeout
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.TooManyConnectionsError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot answer now (rather than a bug or bad data)."""
    for error in _causes(exc):
        if isinstance(error, _UNAVAILABLE):
            return True
        if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
            return True
        # SQLite's busy timeout ran out: another process held the write lock all along.
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return True
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending.append(error.__cause__)
        if not error.__suppress_context__:  # `raise ... from None` hid it on purpose
            pending.append(error.__context__)
        if isinstance(orig, BaseException):
            pending.append(orig)
