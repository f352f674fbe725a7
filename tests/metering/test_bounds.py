"""Reported calls are bounded: their times, duration and price, and the balances they move.
Whatever is out of bounds is a 400 that names the limit, alone in a batch, never a 500."""

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import World
from tests.metering.conftest import Meter, balance_of, ledger_count
from tests.support.errors import assert_error
from tests.support.metering import owing_nearly_the_most
from zoopay.db.tables import api_calls

YEARS = timedelta(days=3 * 365)


def out_of_bounds(meter: Meter, user_id: str) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    now = meter.clock.now
    return [
        ("started in 9999", meter.call(user_id, started_at="9999-12-31T23:59:59Z"), ("2100",)),
        (
            "completed in 9999",
            meter.call(user_id, completed_at="9999-12-31T23:59:59+00:00"),
            ("completed_at", "2100"),
        ),
        ("started in 1970", meter.call(user_id, started_at="1970-01-01T00:00:00Z"), ("2000",)),
        (
            "started a micro-second before 2000 (in UTC)",
            meter.call(user_id, started_at="2000-01-01T00:59:59.999999+01:00"),
            ("started_at", "2000"),
        ),
        (
            "lasting 24 hours and a second",
            meter.call(
                user_id,
                endpoint="/modeling/run",
                completed_at=(now + timedelta(hours=24, seconds=1)).isoformat(),
            ),
            ("24 hours",),
        ),
        (
            "priced 1e9 and lasting years",
            meter.call(user_id, price="1000000000", completed_at=(now + YEARS).isoformat()),
            ("24 hours",),
        ),
        ("priced a micro over 10,000", meter.call(user_id, price="10000.000001"), ("10000.00",)),
        ("priced 1e9", meter.call(user_id, price=1000000000), ("10000.00", "1000000000.00")),
    ]


async def _recorded(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(api_calls))).scalar_one())


async def test_calls_out_of_bounds_are_400s_that_change_nothing(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    path = f"/users/{alice.id}/payment/balance"
    before = (await balance_of(client, staff.headers, path), await ledger_count(engine))
    for label, call, mentions in out_of_bounds(meter, alice.id):
        response = await meter.report(call)
        assert_error(response, 400)
        for mention in mentions:
            assert mention in response.json()["message"], (label, response.text)
    assert await _recorded(engine) == 0
    assert (await balance_of(client, staff.headers, path), await ledger_count(engine)) == before


async def test_the_bounds_themselves_are_accepted(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    alice = await world.user()
    day = meter.call(
        alice.id,
        endpoint="/modeling/run",
        completed_at=(meter.clock.now + timedelta(hours=24)).isoformat(),
    )
    dear = meter.call(alice.id, price="10000")
    earliest = meter.call(alice.id, started_at="2000-01-01T00:00:00Z", completed_at=None)
    earliest["completed_at"] = earliest["started_at"]
    latest = meter.call(alice.id, started_at="2099-12-31T23:59:59.999999Z")
    latest["completed_at"] = latest["started_at"]
    responses = [await meter.report(call) for call in (day, dear, earliest, latest)]
    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    assert [r.json()["price"] for r in responses[:2]] == ["720.00", "10000.00"]
    assert responses[0].json()["minutes"] == 24 * 60


async def test_a_balance_past_its_column_is_a_400_naming_the_limit(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    debtor = await owing_nearly_the_most(world, engine)
    path = f"/users/{debtor.id}/payment/balance"
    before = (await balance_of(client, staff.headers, path), await ledger_count(engine))

    response = await meter.report(meter.call(debtor.id, price="1000"))

    assert_error(response, 400)
    message = response.json()["message"]
    assert "total_due" in message and "9223372036854.775807" in message, message
    assert await _recorded(engine) == 0
    assert (await balance_of(client, staff.headers, path), await ledger_count(engine)) == before


@pytest.mark.parametrize("size", [6, 200])
async def test_in_a_batch_each_call_out_of_bounds_fails_alone(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine, size: int
) -> None:
    alice = await world.user()
    debtor = await owing_nearly_the_most(world, engine)
    bad = [
        meter.call(alice.id, started_at="9999-01-01T00:00:00Z"),
        meter.call(debtor.id, price="1000"),  # fails only when debited, with the others
        meter.call(alice.id, completed_at=(meter.clock.now + YEARS).isoformat()),
    ]
    good = [meter.call(alice.id) for _ in range(size - len(bad))]
    calls = [*good[:1], bad[0], *good[1:2], bad[1], *good[2:3], bad[2], *good[3:]]

    response = await meter.batch(calls)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [c["id"] for c in calls]
    failed = {r["id"]: r for r in results if r["status"] != 201}
    assert set(failed) == {c["id"] for c in bad}
    assert all(
        r["status"] == 400 and r["error"]["error_code"] == "bad_request" for r in failed.values()
    )
    assert "2100" in failed[bad[0]["id"]]["error"]["message"]
    assert "9223372036854.775807" in failed[bad[1]["id"]]["error"]["message"]
    assert "24 hours" in failed[bad[2]["id"]]["error"]["message"]
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(api_calls.c.id))).scalars())
    assert stored == {c["id"] for c in good}
