"""The fault tests measure the service's own limits (a 503 in seconds), so their app runs with
the service's default timeouts, not the longer ones the rest of the suite uses on a shared
machine. The migration tests each take a database of their own."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, POSTGRES_ADMIN_URL, Clock, _postgres_admin, app_client
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import create_engine


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
async def client(
    app_settings: Settings, catalog: Catalog, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(app_settings.database_url, timeouts=app_settings.timeouts())
    try:
        async with app_client(
            create_app(app_settings, engine=engine, catalog=catalog), clock
        ) as client:
            yield client
    finally:
        await engine.dispose()


@pytest.fixture
async def own_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own, at no schema yet."""
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrating.db'}"
        return
    name = f"zoopay_migration_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
