"""The `stripe` processor against localstripe, started once per session (tests.support)."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World, app_client
from tests.support.localstripe import API_KEY, PUBLISHABLE_KEY, localstripe
from tests.support.stripe_events import WEBHOOK_SECRET
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.processors.stripe import StripeConfig, StripeProcessor


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with localstripe(log) as base_url:
        yield base_url


@pytest.fixture
async def stripe_processor(localstripe_url: str) -> AsyncIterator[StripeProcessor]:
    processor = StripeProcessor(StripeConfig(api_key=API_KEY, api_base=localstripe_url))
    yield processor
    await processor.aclose()


@pytest.fixture
def stripe_settings(database_url: str, localstripe_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        processor="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=localstripe_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_publishable_key=PUBLISHABLE_KEY,
    )


@pytest.fixture
async def stripe_client(
    stripe_settings: Settings, engine: AsyncEngine, catalog: Catalog, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stripe_settings, engine=engine, catalog=catalog)
    assert isinstance(app.state.processor, StripeProcessor)
    async with app_client(app, clock) as client:
        yield client
    await app.state.processor.aclose()


@dataclass(frozen=True)
class Stripe:
    """What these tests use: zoopay on the stripe processor, and localstripe behind it."""

    client: httpx.AsyncClient
    processor: StripeProcessor
    base_url: str
    engine: AsyncEngine
    world: World
    clock: Clock


@pytest.fixture
def stripe(
    stripe_client: httpx.AsyncClient,
    stripe_processor: StripeProcessor,
    localstripe_url: str,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
) -> Stripe:
    return Stripe(stripe_client, stripe_processor, localstripe_url, engine, world, clock)
