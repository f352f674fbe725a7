"""The `stripe` processor against localstripe, started once per session (tests.support)."""

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.localstripe import API_KEY, localstripe
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
