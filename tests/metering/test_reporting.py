"""Reporting calls: pricing, the debit order, idempotency, and who may report."""

import json
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import World
from tests.metering.conftest import Meter, ledger_count
from zoopay.db.tables import api_calls, ledger_entries

API_CALL_FIELDS = {
    "completed_at",
    "created_at",
    "duration",
    "email",
    "endpoint",
    "id",
    "ip_address",
    "method",
    "minutes",
    "org_id",
    "origin",
    "price",
    "request_body",
    "request_query_params",
    "response_body",
    "started_at",
    "status_code",
    "stripe_invoice_item_id",
    "token",
    "updated_at",
    "user_agent",
    "user_id",
}


async def _balance(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/user/payment/balance", headers=headers)).json()
    return body


async def test_a_reported_call_is_priced_debited_and_recorded(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice = await world.user()
    call = meter.call(alice.id, endpoint="/file/conversion", ip_address="10.0.0.1", user_agent="ua")
    response = await meter.report(call)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == API_CALL_FIELDS
    assert body["id"] == call["id"]
    assert body["price"] == "0.004"
    assert body["email"] == alice.email
    assert body["minutes"] == 0
    assert body["org_id"] is None
    assert (body["ip_address"], body["user_agent"]) == ("10.0.0.1", "ua")
    balance = await _balance(client, alice.headers)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "9.996"
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(ledger_entries).where(ledger_entries.c.reference == call["id"])
                )
            )
            .mappings()
            .all()
        )
    assert [(r["bucket"], r["delta_micros"], r["reason"]) for r in rows] == [
        ("monthly", -4000, "api_call")
    ]


async def test_minutes_are_derived_and_billed_per_started_minute(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    alice = await world.user()
    call = meter.call(
        alice.id,
        endpoint="/modeling/cmd",
        started_at="2026-01-15T12:00:00Z",
        completed_at="2026-01-15T12:02:00.001Z",
    )
    body = (await meter.report(call)).json()
    assert (body["minutes"], body["duration"], body["price"]) == (3, 120001, "1.50")


async def test_an_explicit_price_overrides_the_list(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    alice = await world.user()
    body = (await meter.report(meter.call(alice.id, price="0.123456"))).json()
    assert body["price"] == "0.123456"
    assert (await _balance(client, alice.headers))[
        "monthly_api_credits_remaining_monetary_value"
    ] == "9.876544"


async def test_the_same_id_again_returns_the_original_and_draws_nothing(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice = await world.user()
    call = meter.call(alice.id)
    first = await meter.report(call)
    entries = await ledger_count(engine)
    again = await meter.report(call)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await ledger_count(engine) == entries
    assert (await _balance(client, alice.headers))[
        "monthly_api_credits_remaining_monetary_value"
    ] == "9.996"


async def test_the_same_id_with_other_content_is_a_conflict(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice = await world.user()
    call = meter.call(alice.id)
    await meter.report(call)
    entries = await ledger_count(engine)
    response = await meter.report({**call, "status_code": 500})
    assert response.status_code == 409
    assert response.json()["error_code"] == "conflict"
    assert call["id"] in response.json()["message"]
    assert await ledger_count(engine) == entries


async def test_debits_monthly_then_stable_then_total_due(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    await client.put(
        f"/users/{alice.id}/payment/balance",
        headers=staff.headers,
        json={
            "monthly_api_credits_remaining_monetary_value": "1.000001",
            "stable_api_credits_remaining_monetary_value": "2",
        },
    )
    await meter.report(meter.call(alice.id, price="0.5"))
    balance = await _balance(client, alice.headers)
    assert (
        balance["monthly_api_credits_remaining_monetary_value"],
        balance["stable_api_credits_remaining_monetary_value"],
    ) == ("0.500001", "2.00")
    await meter.report(meter.call(alice.id, price="1.5"))
    balance = await _balance(client, alice.headers)
    assert (
        balance["monthly_api_credits_remaining_monetary_value"],
        balance["stable_api_credits_remaining_monetary_value"],
    ) == ("0.00", "1.000001")
    await meter.report(meter.call(alice.id, price="3"))
    balance = await _balance(client, alice.headers)
    assert balance["stable_api_credits_remaining_monetary_value"] == "0.00"
    assert balance["total_due"] == "1.999999"


async def test_a_free_customer_past_its_credits_still_lands_then_is_refused(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice = await world.user()
    assert (await meter.authorize(alice.id)).status_code == 200
    response = await meter.report(meter.call(alice.id, price="12.50"))
    assert response.status_code == 201
    assert (await _balance(client, alice.headers))["total_due"] == "2.50"
    entries = await ledger_count(engine)
    refused = await meter.authorize(alice.id)
    assert refused.status_code == 402
    assert refused.json()["error_code"] == "payment_required"
    assert "2.50" in refused.json()["message"] and "upgrade" in refused.json()["message"]
    assert await ledger_count(engine) == entries
    # Nothing reported is dropped, even when refused.
    assert (await meter.report(meter.call(alice.id, price="1"))).status_code == 201
    assert (await _balance(client, alice.headers))["total_due"] == "3.50"


async def test_a_plan_with_overage_keeps_authorizing(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    alice = await world.user()
    await client.put(
        "/user/payment/subscriptions", headers=alice.headers, json={"modeling_app": "pro"}
    )
    await meter.report(meter.call(alice.id, price="150"))
    assert (await _balance(client, alice.headers))["total_due"] == "50.00"
    allowed = await meter.authorize(alice.id, endpoint="/modeling/cmd")
    assert allowed.status_code == 200
    assert allowed.json() == {
        "allowed": True,
        "customer_kind": "user",
        "customer_id": alice.id,
        "monthly_api_credits_remaining_monetary_value": "0.00",
        "stable_api_credits_remaining_monetary_value": "0.00",
        "total_due": "50.00",
        "price_per_call": "0.00",
        "price_per_minute": "0.50",
    }


async def test_the_users_org_is_charged(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    staff, admin, bob = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin, bob)
    await client.put(
        f"/orgs/{org.id}/payment/balance",
        headers=staff.headers,
        json={"stable_api_credits_remaining_monetary_value": "1"},
    )
    body = (await meter.report(meter.call(bob.id))).json()
    assert body["org_id"] == org.id
    org_balance = (
        await client.get(f"/orgs/{org.id}/payment/balance", headers=staff.headers)
    ).json()
    assert org_balance["stable_api_credits_remaining_monetary_value"] == "0.996"
    assert (await _balance(client, bob.headers))[
        "monthly_api_credits_remaining_monetary_value"
    ] == "10.00"
    named = (await meter.report(meter.call(bob.id, org_id=org.id))).json()
    assert named["org_id"] == org.id


async def test_refused_reports_change_nothing(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice, admin = await world.user(), await world.user()
    org = await world.org(admin)
    entries = await ledger_count(engine)
    cases = [
        (meter.call("00000000-0000-4000-8000-000000000001"), 404),
        (meter.call(alice.id, org_id=org.id), 400),
        (meter.call(alice.id, price="-1"), 400),
        (meter.call(alice.id, price="NaN"), 400),
        (meter.call(alice.id, price="0.0000001"), 400),
        (
            meter.call(
                alice.id, started_at="2026-01-15T12:00:00Z", completed_at="2026-01-15T11:59:59Z"
            ),
            400,
        ),
        ({**meter.call(alice.id), "id": "not-a-uuid"}, 400),
        ({**meter.call(alice.id), "user_id": "42"}, 400),
        ({**meter.call(alice.id), "method": "FETCH"}, 400),
        ({**meter.call(alice.id), "started_at": "2026-01-15T12:00:00"}, 400),
        ({**meter.call(alice.id), "surprise": 1}, 400),
    ]
    for call, status in cases:
        response = await meter.report(call)
        assert response.status_code == status, (call, response.text)
        assert response.json()["error_code"] in {"bad_request", "not_found"}
        assert response.json()["message"]
    assert await ledger_count(engine) == entries
    async with engine.connect() as conn:
        assert (await conn.execute(select(api_calls))).first() is None


async def test_only_services_and_staff_report(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    call = meter.call(alice.id)
    denied = await client.post("/api-calls", json=call, headers=alice.headers)
    assert denied.status_code == 403
    assert (
        await client.post(
            "/api-calls/authorize",
            json={"user_id": alice.id, "endpoint": "x"},
            headers=alice.headers,
        )
    ).status_code == 403
    assert (await client.post("/api-calls", json=call)).status_code == 401
    assert (await client.post("/api-calls", json=call, headers=staff.headers)).status_code == 201
    service_reads = await client.get("/user/payment/balance", headers=meter.headers)
    assert service_reads.status_code == 403
    assert (await client.get("/api-calls", headers=meter.headers)).status_code == 403


async def test_a_batch_answers_each_call_in_order(
    client: httpx.AsyncClient, world: World, meter: Meter
) -> None:
    alice = await world.user()
    first = meter.call(alice.id, price="1")
    await meter.report(first)
    fresh = meter.call(alice.id, price="2")
    invalid = meter.call(alice.id, price="-3")
    calls = [
        fresh,
        meter.call("00000000-0000-4000-8000-000000000001"),
        first,
        {**first, "price": "9"},
        fresh,
        invalid,
        "not a call",
    ]
    response = await meter.batch(calls)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 404, 200, 409, 200, 400, 400]
    assert [r["id"] for r in results] == [
        fresh["id"],
        calls[1]["id"],
        first["id"],
        first["id"],
        fresh["id"],
        invalid["id"],
        None,
    ]
    assert [r["price"] for r in results] == ["2.00", None, "1.00", None, "2.00", None, None]
    assert results[1]["error"]["error_code"] == "not_found"
    assert results[3]["error"]["error_code"] == "conflict"
    assert (
        "price" in results[5]["error"]["message"] and "negative" in results[5]["error"]["message"]
    )
    assert results[6]["error"]["error_code"] == "bad_request"
    assert {r["error"]["request_id"] for r in results if r["error"]} == {
        response.headers["x-api-call-id"]
    }
    assert (await _balance(client, alice.headers))[
        "monthly_api_credits_remaining_monetary_value"
    ] == "7.00"


async def test_a_batch_holds_at_most_1000_calls(
    client: httpx.AsyncClient, world: World, meter: Meter, engine: AsyncEngine
) -> None:
    alice = await world.user()
    entries = await ledger_count(engine)
    response = await meter.batch([meter.call(alice.id) for _ in range(1001)])
    assert response.status_code == 400
    assert "1000" in response.json()["message"]
    assert await ledger_count(engine) == entries
    full = await meter.batch([meter.call(alice.id) for _ in range(1000)])
    assert [r["status"] for r in full.json()["results"]] == [201] * 1000
    assert (await _balance(client, alice.headers))[
        "monthly_api_credits_remaining_monetary_value"
    ] == "6.00"


async def test_an_integer_written_with_a_zero_fraction_is_that_integer(
    world: World, meter: Meter
) -> None:
    """JSON Schema calls 404.0 an integer, so the schema's `status_code` takes it; 404.5 is not."""
    alice = await world.user()
    call = meter.call(alice.id)
    body = json.dumps(call).replace('"status_code": 200', '"status_code": 404.0')
    response = await meter.client.post("/api-calls", content=body, headers=meter.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status_code"] == 404
    fraction = json.dumps(meter.call(alice.id)).replace('"status_code": 200', '"status_code": 4.5')
    refused = await meter.client.post("/api-calls", content=fraction, headers=meter.headers)
    assert refused.status_code == 400, refused.text
    assert "status_code" in refused.json()["message"]
