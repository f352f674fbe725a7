"""Monthly refresh under metering, `zoopay billing refresh`, and the listings."""

import json
import subprocess
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.metering.conftest import Meter
from tests.support.cli import ZOOPAY, zoopay_env, zoopay_json
from tests.support.database import dump
from tests.support.errors import assert_error
from zoopay.db.tables import ledger_entries


async def _refresh_entries(engine: AsyncEngine, customer_id: str) -> int:
    query = (
        select(func.count())
        .select_from(ledger_entries)
        .where(ledger_entries.c.customer_id == customer_id, ledger_entries.c.reason == "refresh")
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_the_first_call_of_a_period_refreshes_the_monthly_bucket_once(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock, engine: AsyncEngine
) -> None:
    alice = await world.user()
    await meter.report(meter.call(alice.id, price="9"))
    clock.advance(days=31)
    for _ in range(3):
        assert (await meter.report(meter.call(alice.id, price="1"))).status_code == 201
    balance = (await client.get("/user/payment/balance", headers=alice.headers)).json()
    assert balance["monthly_api_credits_remaining_monetary_value"] == "7.00"
    assert await _refresh_entries(engine, alice.id) == 1


async def test_authorize_sees_a_due_refresh_without_writing_it(
    world: World, meter: Meter, clock: Clock, engine: AsyncEngine
) -> None:
    alice = await world.user()
    await meter.report(meter.call(alice.id, price="12"))
    assert (await meter.authorize(alice.id)).status_code == 402
    clock.advance(days=31)
    # total_due is still owed, so a free customer stays refused after the refresh.
    assert (await meter.authorize(alice.id)).status_code == 402
    assert await _refresh_entries(engine, alice.id) == 0


async def test_billing_refresh_refreshes_everyone_due_exactly_once(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine, database_url: str
) -> None:
    alice, bob = await world.user(), await world.user()
    await meter.report(meter.call(alice.id, price="4"))
    await meter.report(meter.call(bob.id, price="6"))
    assert zoopay_json(database_url, "billing", "refresh", "--at", "2026-02-01T00:00:00+0000") == {
        "refreshed": 0
    }
    assert zoopay_json(database_url, "billing", "refresh", "--at", "2026-02-16T00:00:00+0000") == {
        "refreshed": 2
    }
    assert zoopay_json(database_url, "billing", "refresh", "--at", "2026-02-16T00:00:00+0000") == {
        "refreshed": 0
    }
    for person in (alice, bob):
        assert await _refresh_entries(engine, person.id) == 1
    staff = await world.user(staff=True)
    balance = (await client.get(f"/users/{alice.id}/payment/balance", headers=staff.headers)).json()
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"


async def _all_pages(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        page = (await client.get(path, headers=headers, params=query)).json()
        items.extend(page["items"])
        token = page["next_page"]
        if not token:
            return items


async def test_listings_page_through_each_call_once(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock
) -> None:
    staff, alice, admin, bob = (
        await world.user(staff=True),
        await world.user(),
        await world.user(),
        await world.user(),
    )
    org = await world.org(admin, bob)
    alice_ids, bob_ids = [], []
    for _ in range(5):
        clock.advance(seconds=1)
        alice_ids.append((await meter.report(meter.call(alice.id))).json()["id"])
        bob_ids.append((await meter.report(meter.call(bob.id))).json()["id"])
    mine = await _all_pages(client, "/user/api-calls", alice.headers, limit=2)
    assert [c["id"] for c in mine] == alice_ids
    newest_first = await _all_pages(
        client, "/user/api-calls", alice.headers, limit=3, sort_by="created_at_descending"
    )
    assert [c["id"] for c in newest_first] == alice_ids[::-1]
    org_calls = await _all_pages(client, "/org/api-calls", admin.headers, limit=4)
    assert [c["id"] for c in org_calls] == bob_ids
    assert {c["org_id"] for c in org_calls} == {org.id}
    assert (await client.get("/org/api-calls", headers=bob.headers)).status_code == 403
    everyone = await _all_pages(client, "/api-calls", staff.headers, limit=3)
    assert sorted(c["id"] for c in everyone) == sorted(alice_ids + bob_ids)
    assert (await client.get("/api-calls", headers=alice.headers)).status_code == 403
    by_email = await _all_pages(client, f"/users/{alice.email}/api-calls", staff.headers)
    assert [c["id"] for c in by_email] == alice_ids
    assert [
        c["id"] for c in await _all_pages(client, f"/users/{alice.id}/api-calls", alice.headers)
    ] == alice_ids
    assert (
        await client.get(f"/users/{bob.id}/api-calls", headers=alice.headers)
    ).status_code == 403


async def test_one_call_is_visible_to_its_user_its_org_admin_and_staff(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    staff, alice, admin, bob = (
        await world.user(staff=True),
        await world.user(),
        await world.user(),
        await world.user(),
    )
    await world.org(admin, bob)
    call_id = (await meter.report(meter.call(bob.id))).json()["id"]
    assert (await client.get(f"/user/api-calls/{call_id}", headers=bob.headers)).json()[
        "id"
    ] == call_id
    assert (await client.get(f"/org/api-calls/{call_id}", headers=admin.headers)).json()[
        "id"
    ] == call_id
    assert (await client.get(f"/api-calls/{call_id}", headers=staff.headers)).json()[
        "id"
    ] == call_id
    assert (
        await client.get(f"/user/api-calls/{call_id}", headers=alice.headers)
    ).status_code == 404
    # An API call id in a path is a UUID: anything else names no call.
    not_an_id = await client.get("/user/api-calls/not-a-uuid", headers=alice.headers)
    assert_error(not_an_id, 404, "not_found")
    assert (
        await client.get("/user/api-calls?page_token=%%%", headers=alice.headers)
    ).status_code == 400


async def test_ledger_listings_name_each_cause_newest_first(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock
) -> None:
    staff, alice, admin = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin)
    await client.put(
        f"/users/{alice.id}/payment/balance",
        headers=staff.headers,
        json={"stable_api_credits_remaining_monetary_value": "5"},
    )
    await client.put(
        "/user/payment/subscriptions", headers=alice.headers, json={"modeling_app": "pro"}
    )
    call_id = (await meter.report(meter.call(alice.id, price="0.25"))).json()["id"]
    clock.advance(days=31)
    await client.get("/user/payment/balance", headers=alice.headers)
    entries = await _all_pages(client, "/user/payment/ledger", alice.headers, limit=2)
    assert [(e["reason"], e["bucket"], e["delta"]) for e in entries] == [
        ("refresh", "monthly", "0.25"),
        ("api_call", "monthly", "-0.25"),
        ("plan_change", "monthly", "90.00"),
        ("staff_change", "stable", "5.00"),
        ("grant", "monthly", "10.00"),
    ]
    assert entries[1]["reference"] == call_id
    assert entries[3]["actor"] == staff.id
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    staff_view = (
        await client.get(f"/users/{alice.email}/payment/ledger", headers=staff.headers)
    ).json()
    assert [e["id"] for e in staff_view["items"]] == [e["id"] for e in entries]
    assert (await client.get(f"/orgs/{org.id}/payment/ledger", headers=staff.headers)).json()[
        "items"
    ] == []
    assert (await client.get("/org/payment/ledger", headers=admin.headers)).status_code == 200
    assert (
        await client.get(f"/users/{alice.id}/payment/ledger", headers=alice.headers)
    ).status_code == 403
    assert (
        await client.get("/user/payment/ledger?page_token=abc", headers=alice.headers)
    ).status_code == 400


async def test_billing_refresh_refuses_a_time_in_the_future_or_out_of_range(
    world: World, meter: Meter, engine: AsyncEngine, database_url: str
) -> None:
    alice = await world.user()
    await meter.report(meter.call(alice.id, price="4"))
    before = await dump(engine)
    env = zoopay_env(database_url)
    for at, says in (
        ("2099-01-01T00:00:00+0000", "future"),  # would grant every period up to 2099 now
        ("1999-12-31T23:59:59+0000", "2000-01-01"),
    ):
        done = subprocess.run(
            [ZOOPAY, "billing", "refresh", "--at", at], capture_output=True, text=True, env=env
        )
        assert done.returncode == 1, done.stdout
        assert done.stdout == ""
        error = json.loads(done.stderr)
        assert error["error_code"] == "bad_request" and says in error["message"], error
    assert await dump(engine) == before
