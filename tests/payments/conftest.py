"""Helpers of the payments tests: a card attached through the HTTP flow, money made due."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person
from zoopay.db.engine import transaction
from zoopay.ledger.service import Bucket, Customer, Posting, Reason, lock_balance, post

ADDRESS = {
    "city": "San Francisco",
    "country": "US",
    "state": "CA",
    "street1": "1 Market St",
    "street2": None,
    "zip": "94107",
}
BILLING = {"address": ADDRESS, "name": "Alice Example", "phone": "+14155550100"}


async def attach(client: httpx.AsyncClient, person: Person, token: str, base: str = "/user") -> str:
    """A card attached as a browser would: intent, then confirm; its id."""
    intent = await client.post(f"{base}/payment/intent", headers=person.headers)
    assert intent.status_code == 201, intent.text
    confirmed = await client.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": intent.json()["client_secret"], "payment_method": token},
    )
    assert confirmed.status_code == 200, confirmed.text
    method_id: str = confirmed.json()["id"]
    return method_id


async def make_due(engine: AsyncEngine, customer: Customer, micros: int, clock: Clock) -> None:
    """Money owed, through the ledger as metering would post it."""
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer)
        posting = Posting(Reason.API_CALL, actor="test")
        await post(conn, balance, {Bucket.TOTAL_DUE: micros}, posting, clock.now)


@pytest.fixture
def billing() -> dict[str, object]:
    return dict(BILLING)
