import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.billing import cards_on_file
from zoopay.accounts import service as accounts
from zoopay.db.engine import transaction
from zoopay.db.tables import ledger_entries


class Meter:
    """Reports calls as a service would, and reads back what they did."""

    def __init__(self, client: httpx.AsyncClient, token: str, clock: Clock) -> None:
        self.client, self.clock = client, clock
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, user_id: str, **fields: Any) -> dict[str, Any]:
        started = fields.pop("started_at", self.clock.now.isoformat())
        return {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "endpoint": "/file/conversion",
            "method": "POST",
            "status_code": 200,
            "started_at": started,
            "completed_at": fields.pop("completed_at", started),
            **fields,
        }

    async def report(self, call: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/api-calls", json=call, headers=self.headers)

    async def batch(self, calls: list[dict[str, Any]]) -> httpx.Response:
        return await self.client.post(
            "/api-calls/batch", json={"calls": calls}, headers=self.headers
        )

    async def authorize(self, user_id: str, **fields: Any) -> httpx.Response:
        body = {"user_id": user_id, "endpoint": "/file/conversion", **fields}
        return await self.client.post("/api-calls/authorize", json=body, headers=self.headers)


@pytest.fixture
async def meter(client: httpx.AsyncClient, engine: AsyncEngine, clock: Clock) -> Meter:
    async with transaction(engine) as conn:
        token = await accounts.create_service_token(conn, service_name="product", now=clock.now)
    return Meter(client, token, clock)


async def ledger_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(ledger_entries))).scalar_one()
        )


async def balance_of(
    client: httpx.AsyncClient, staff_headers: dict[str, str], path: str
) -> dict[str, Any]:
    response = await client.get(path, headers=staff_headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# Customers here have a card on file: their upgrades are paid (tests/support/billing.py).
__all__ = ["World", "cards_on_file"]
