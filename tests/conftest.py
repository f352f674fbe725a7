"""Shared fixtures: a fresh database per run (SQLite or PostgreSQL), the app, a movable clock.

`ZOOPAY_TEST_DATABASE=postgresql` runs the suite on the PostgreSQL named by
`ZOOPAY_TEST_POSTGRES_URL` (default: postgres on 127.0.0.1:5432) in a database made for the
run and dropped after it. An unreachable PostgreSQL fails the run; it never skips.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts import service as accounts
from zoopay.app import create_app
from zoopay.catalog.service import Catalog, load_catalog
from zoopay.config import Settings
from zoopay.db import migrate
from zoopay.db.engine import Timeouts, create_engine, transaction
from zoopay.db.tables import balances, metadata
from zoopay.ledger.service import Bucket, Customer, ledger_sums

BACKEND = os.environ.get("ZOOPAY_TEST_DATABASE", "sqlite")
# The suite's engine waits longer than the service's 2 s: on a shared, loaded machine one
# statement of a test that is not about faults took over 2 s (a 503 in CI, run of 2026-12-02).
# The fault tests build engines of their own with short limits.
SHARED_MACHINE_TIMEOUTS = Timeouts(connect=10.0, statement=20.0, pool=20.0)
POSTGRES_ADMIN_URL = os.environ.get(
    "ZOOPAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def pytest_report_header() -> str:
    return f"zoopay test database: {BACKEND}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres_only` tests belong to the PostgreSQL run and `sqlite_only` ones to the SQLite
    run: elsewhere they are deselected, not skipped, so that no run reports a test it did not
    run."""
    other = "sqlite_only" if BACKEND == "postgresql" else "postgres_only"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


async def _postgres_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BACKEND == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "zoopay.db"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield url
        return
    if BACKEND != "postgresql":
        raise RuntimeError(f"ZOOPAY_TEST_DATABASE must be sqlite or postgresql, not {BACKEND}")
    name = f"zoopay_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, timeouts=SHARED_MACHINE_TIMEOUTS)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@dataclass
class Clock:
    """The time every service call sees; tests move it."""

    now: datetime = START

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def assert_ledger_matches_balances(engine: AsyncEngine) -> None:
    """For every customer and bucket, the ledger entries sum to the balance."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(balances))).mappings().all()
        for row in rows:
            sums = await ledger_sums(
                conn, customer=Customer(row["customer_kind"], row["customer_id"])
            )
            assert sums[Bucket.MONTHLY] == row["monthly_micros"], row
            assert sums[Bucket.STABLE] == row["stable_micros"], row
            assert sums[Bucket.TOTAL_DUE] == row["total_due_micros"], row


async def empty(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(delete(table))


def empty_database(url: str) -> None:
    """For a sync fixture that needs an empty database (a server's first start)."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await empty(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(autouse=True)
async def clean_database(engine: AsyncEngine) -> AsyncIterator[None]:
    """Every test starts empty and ends with the ledger equal to the balances."""
    await empty(engine)
    yield
    await assert_ledger_matches_balances(engine)


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    limits = SHARED_MACHINE_TIMEOUTS
    return Settings(
        database_url=database_url,
        db_connect_timeout=limits.connect,
        db_statement_timeout=limits.statement,
        db_pool_timeout=limits.pool,
    )


@asynccontextmanager
async def app_client(app: FastAPI, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to an app in this process, at the test clock's time."""
    app.state.clock = lambda: clock.now
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://zoopay.test") as client:
        yield client


@pytest.fixture
async def client(
    app_settings: Settings, engine: AsyncEngine, catalog: Catalog, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings, engine=engine, catalog=catalog)
    async with app_client(app, clock) as client:
        yield client


@dataclass(frozen=True)
class Person:
    """A user with an API token, as tests drive them."""

    user: accounts.User
    token: str

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class World:
    """Makes users and orgs straight through the services, at the test clock's time."""

    def __init__(self, engine: AsyncEngine, catalog: Catalog, clock: Clock) -> None:
        self.engine, self.catalog, self.clock = engine, catalog, clock

    async def user(self, email: str | None = None, *, staff: bool = False) -> Person:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        async with transaction(self.engine) as conn:
            user = await accounts.create_user(
                conn, catalog=self.catalog, email=email, now=self.clock.now, is_staff=staff
            )
            return Person(user, await accounts.create_token(conn, user=user, now=self.clock.now))

    async def org(self, admin: Person, *members: Person, name: str = "Acme") -> accounts.Org:
        async with transaction(self.engine) as conn:
            details = accounts.OrgDetails(name=name)
            org = await accounts.create_org(
                conn, admin=admin.user, details=details, now=self.clock.now
            )
            for member in members:
                role = accounts.OrgRole.MEMBER
                await accounts.add_member(
                    conn, org_id=org.id, user=member.user, role=role, now=self.clock.now
                )
            return org


@pytest.fixture
def world(engine: AsyncEngine, catalog: Catalog, clock: Clock) -> World:
    return World(engine, catalog, clock)
