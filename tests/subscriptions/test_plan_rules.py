"""Plans: where customers start, POST against PUT, the upgrade/downgrade arithmetic, enterprise
pricing, pay_annually, staff changes and the monthly refresh, with the ledger entries each
of them writes."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.support.errors import assert_error
from tests.support.http import ok
from tests.support.plans import ENTERPRISE_PRICE, set_enterprise_price, set_monthly
from zoopay.db.tables import ledger_entries, subscriptions

FREE_PRICE = {"type": "flat", "interval": "month", "price": "0.00"}
PRO_PRICE = {"type": "flat", "interval": "month", "price": "49.00"}
TEAM_PRICE = {"type": "per_user", "interval": "month", "price": "99.00"}
GRANTS = {"free": "10.00", "pro": "100.00", "team": "250.00", "enterprise": "1000.00"}


def micros(dollars: str) -> int:
    whole, _, fraction = dollars.partition(".")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0"))


async def ledger(
    engine: AsyncEngine, customer_id: str, reason: str | None = None
) -> list[dict[str, Any]]:
    query = (
        select(ledger_entries)
        .where(ledger_entries.c.customer_id == customer_id)
        .order_by(ledger_entries.c.id)
    )
    if reason is not None:
        query = query.where(ledger_entries.c.reason == reason)
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def subscription_row(engine: AsyncEngine, customer_id: str) -> dict[str, Any] | None:
    query = select(subscriptions).where(subscriptions.c.customer_id == customer_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def user_balance(client: httpx.AsyncClient, person: Person) -> dict[str, Any]:
    return await ok(await client.get("/user/payment/balance", headers=person.headers))


async def org_balance(client: httpx.AsyncClient, member: Person) -> dict[str, Any]:
    return await ok(await client.get("/org/payment/balance", headers=member.headers))


# Where customers start


async def test_every_user_starts_on_free_with_ten_dollars_monthly(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    for _ in range(2):
        person = await world.user()
        balance = await user_balance(client, person)
        assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
        assert balance["monthly_api_credits_remaining"] == 20
        assert balance["stable_api_credits_remaining_monetary_value"] == "0.00"
        assert balance["stable_api_credits_remaining"] == 0
        assert balance["total_due"] == "0.00"
        assert balance["modeling_app_enterprise_price"] is None
        tier = balance["subscription_details"]["modeling_app"]
        assert tier["name"] == "free"
        assert tier["price"] == FREE_PRICE
        assert tier["monthly_pay_as_you_go_api_credits"] == 20
        assert tier["monthly_pay_as_you_go_api_credits_monetary_value"] == "10.00"

        row = await subscription_row(engine, person.id)
        assert row is not None
        assert (row["tier"], row["pay_annually"], row["customer_kind"]) == ("free", False, "user")
        assert balance["subscription_id"] == row["id"]
        entries = await ledger(engine, person.id)
        assert [(e["bucket"], e["delta_micros"], e["reason"]) for e in entries] == [
            ("monthly", 10_000_000, "grant")
        ]
        assert entries[0]["actor"] == person.id
        assert entries[0]["reference"] == row["id"]

        plan = await ok(await client.get("/user/payment/subscriptions", headers=person.headers))
        assert plan == {"modeling_app": tier}


async def test_a_new_org_has_no_subscription_and_no_credits(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    org = await world.org(admin)
    balance = await org_balance(client, admin)
    assert balance["map_id"] == org.id
    assert balance["subscription_details"] is None
    assert balance["subscription_id"] is None
    assert balance["monthly_api_credits_remaining"] == 0
    assert balance["monthly_api_credits_remaining_monetary_value"] == "0.00"
    assert balance["stable_api_credits_remaining"] == 0
    assert balance["stable_api_credits_remaining_monetary_value"] == "0.00"
    assert balance["modeling_app_enterprise_price"] is None
    assert_error(
        await client.get("/org/payment/subscriptions", headers=admin.headers), 404, "not_found"
    )
    assert await subscription_row(engine, org.id) is None
    assert await ledger(engine, org.id) == []


# POST creates once, PUT creates or changes


async def test_org_post_team_then_post_again_conflicts_and_changes_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    org = await world.org(admin)
    created = await ok(
        await client.post(
            "/org/payment/subscriptions", headers=admin.headers, json={"modeling_app": "team"}
        )
    )
    assert created["modeling_app"]["name"] == "team"
    assert created["modeling_app"]["price"] == TEAM_PRICE
    balance = await org_balance(client, admin)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "250.00"
    assert balance["monthly_api_credits_remaining"] == 500
    assert balance["subscription_details"] == created
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert (row["tier"], row["customer_kind"]) == ("team", "org")
    assert balance["subscription_id"] == row["id"]
    entries = await ledger(engine, org.id)
    assert [(e["delta_micros"], e["balance_after_micros"], e["reason"]) for e in entries] == [
        (250_000_000, 250_000_000, "plan_change")
    ]
    assert (entries[0]["actor"], entries[0]["reference"]) == (admin.id, row["id"])

    for body in ({"modeling_app": "team"}, {"modeling_app": "team", "pay_annually": True}, {}):
        again = await client.post("/org/payment/subscriptions", headers=admin.headers, json=body)
        assert "team" in assert_error(again, 409, "conflict")

    assert await org_balance(client, admin) == balance
    assert await subscription_row(engine, org.id) == row
    assert await ledger(engine, org.id) == entries


async def test_org_put_creates_then_changes_the_plan(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    url = "/org/payment/subscriptions"
    created = await ok(await client.put(url, headers=admin.headers, json={"modeling_app": "team"}))
    assert created["modeling_app"]["name"] == "team"
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert row["tier"] == "team"
    await set_enterprise_price(client, staff, org.id, ENTERPRISE_PRICE)
    on_team = await org_balance(client, admin)
    assert on_team["subscription_details"]["modeling_app"]["price"] == TEAM_PRICE
    assert on_team["modeling_app_enterprise_price"] == ENTERPRISE_PRICE
    changed = await ok(
        await client.put(url, headers=admin.headers, json={"modeling_app": "enterprise"})
    )
    assert changed["modeling_app"]["name"] == "enterprise"
    assert await ok(await client.get(url, headers=admin.headers)) == changed
    after = await subscription_row(engine, org.id)
    assert after is not None
    assert (after["id"], after["tier"]) == (row["id"], "enterprise")
    balance = await org_balance(client, admin)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "1000.00"
    assert balance["monthly_api_credits_remaining"] == 2000


async def test_user_post_pro_then_post_again_conflicts(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    url = "/user/payment/subscriptions"
    # Free is not a paid plan: POSTing it again is allowed and changes nothing.
    same = await ok(await client.post(url, headers=alice.headers, json={"modeling_app": "free"}))
    assert same["modeling_app"]["name"] == "free"
    assert len(await ledger(engine, alice.id)) == 1

    pro = await ok(await client.post(url, headers=alice.headers, json={"modeling_app": "pro"}))
    assert pro["modeling_app"]["name"] == "pro"
    assert pro["modeling_app"]["price"] == PRO_PRICE
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "100.00"
    assert balance["subscription_details"] == pro
    entries = await ledger(engine, alice.id)
    row = await subscription_row(engine, alice.id)

    for body in ({"modeling_app": "pro"}, {"modeling_app": "free"}, {}):
        again = await client.post(url, headers=alice.headers, json=body)
        assert "pro" in assert_error(again, 409, "conflict")
    assert await user_balance(client, alice) == balance
    assert await subscription_row(engine, alice.id) == row
    assert await ledger(engine, alice.id) == entries


async def test_put_back_to_free_is_a_downgrade(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    url = "/user/payment/subscriptions"
    await ok(await client.post(url, headers=alice.headers, json={"modeling_app": "pro"}))
    free = await ok(await client.put(url, headers=alice.headers, json={"modeling_app": "free"}))
    assert free["modeling_app"]["name"] == "free"
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert balance["monthly_api_credits_remaining"] == 20
    changes = await ledger(engine, alice.id, "plan_change")
    assert [(e["delta_micros"], e["balance_after_micros"]) for e in changes] == [
        (90_000_000, 100_000_000),
        (-90_000_000, 10_000_000),
    ]
    # Back on free, a POST of pro is allowed again.
    await ok(await client.post(url, headers=alice.headers, json={"modeling_app": "pro"}))


# Upgrade: up to the new grant, by at most what it grants beyond what the period granted
# (free granted 10.00, so pro adds at most 90.00; team 250.00, so enterprise adds 750.00), and
# never down; downgrade: min(remaining, new grant); same tier: unchanged

USER_CHANGES = [
    ("free", "4.00", "pro", "94.00"),
    ("free", "0.00", "pro", "90.00"),
    ("free", "95.00", "pro", "100.00"),
    ("free", "150.000001", "pro", "150.000001"),
    ("pro", "4.00", "free", "4.00"),
    ("pro", "150.000001", "free", "10.00"),
    ("pro", "3.25", "pro", "3.25"),
    ("free", "0.00", "free", "0.00"),
]
ORG_CHANGES = [
    ("team", "100.00", "enterprise", "850.00"),
    ("team", "0.00", "enterprise", "750.00"),
    ("team", "900.00", "enterprise", "1000.00"),
    ("team", "1500.50", "enterprise", "1500.50"),
    ("enterprise", "100.00", "team", "100.00"),
    ("enterprise", "300.00", "team", "250.00"),
    ("team", "7.00", "team", "7.00"),
]


def case_id(case: tuple[str, str, str, str]) -> str:
    return f"{case[0]}-{case[1]}-to-{case[2]}"


async def assert_plan_change(
    engine: AsyncEngine,
    customer_id: str,
    before: list[dict[str, Any]],
    remaining: str,
    expected: str,
    actor: str,
) -> None:
    """Exactly one plan_change entry for a change of the bucket, none when it stays put."""
    row = await subscription_row(engine, customer_id)
    assert row is not None
    new = (await ledger(engine, customer_id))[len(before) :]
    if expected == remaining:
        assert new == []
        return
    assert [(e["bucket"], e["reason"], e["actor"], e["reference"]) for e in new] == [
        ("monthly", "plan_change", actor, row["id"])
    ]
    assert new[0]["delta_micros"] == micros(expected) - micros(remaining)
    assert new[0]["balance_after_micros"] == micros(expected)


@pytest.mark.parametrize("case", USER_CHANGES, ids=case_id)
async def test_user_plan_change_arithmetic(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    case: tuple[str, str, str, str],
) -> None:
    start, remaining, target, expected = case
    staff = await world.user(staff=True)
    alice = await world.user()
    url = "/user/payment/subscriptions"
    await ok(await client.put(url, headers=alice.headers, json={"modeling_app": start}))
    await set_monthly(client, staff, f"/users/{alice.id}", remaining)
    before = await ledger(engine, alice.id)

    changed = await ok(await client.put(url, headers=alice.headers, json={"modeling_app": target}))
    assert changed["modeling_app"]["name"] == target
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == expected
    assert balance["monthly_api_credits_remaining"] == micros(expected) // 500_000
    assert balance["stable_api_credits_remaining_monetary_value"] == "0.00"
    await assert_plan_change(engine, alice.id, before, remaining, expected, alice.id)


@pytest.mark.parametrize("case", ORG_CHANGES, ids=case_id)
async def test_org_plan_change_arithmetic(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    case: tuple[str, str, str, str],
) -> None:
    start, remaining, target, expected = case
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    await set_enterprise_price(client, staff, org.id, ENTERPRISE_PRICE)
    url = "/org/payment/subscriptions"
    await ok(await client.post(url, headers=admin.headers, json={"modeling_app": start}))
    await set_monthly(client, staff, f"/orgs/{org.id}", remaining)
    before = await ledger(engine, org.id)

    changed = await ok(await client.put(url, headers=admin.headers, json={"modeling_app": target}))
    assert changed["modeling_app"]["name"] == target
    balance = await org_balance(client, admin)
    assert balance["monthly_api_credits_remaining_monetary_value"] == expected
    assert balance["monthly_api_credits_remaining"] == micros(expected) // 500_000
    await assert_plan_change(engine, org.id, before, remaining, expected, admin.id)


async def test_the_first_org_plan_grants_from_zero(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    # Credits set before any plan are kept when the plan's grant is smaller.
    await set_monthly(client, staff, f"/orgs/{org.id}", "400.00")
    before = await ledger(engine, org.id)
    url = "/org/payment/subscriptions"
    await ok(await client.post(url, headers=admin.headers, json={"modeling_app": "team"}))
    balance = await org_balance(client, admin)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "400.00"
    assert await ledger(engine, org.id) == before


async def test_only_an_admin_subscribes_an_org_and_tiers_keep_to_their_kind(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, member = await world.user(), await world.user()
    org = await world.org(admin, member)
    url = "/org/payment/subscriptions"
    for method in ("POST", "PUT"):
        denied = await client.request(
            method, url, headers=member.headers, json={"modeling_app": "team"}
        )
        assert_error(denied, 403, "forbidden")
        wrong_kind = await client.request(
            method, url, headers=admin.headers, json={"modeling_app": "pro"}
        )
        assert_error(wrong_kind, 400, "bad_request")
        for tier in ("team", "enterprise"):
            user_wrong_kind = await client.request(
                method,
                "/user/payment/subscriptions",
                headers=admin.headers,
                json={"modeling_app": tier},
            )
            assert_error(user_wrong_kind, 400, "bad_request")
    assert await subscription_row(engine, org.id) is None
    row = await subscription_row(engine, admin.id)
    assert row is not None
    assert row["tier"] == "free"
    assert await ledger(engine, org.id) == []
    # Any member may read the plan once the admin set one.
    await ok(await client.post(url, headers=admin.headers, json={}))
    plan = await ok(await client.get(url, headers=member.headers))
    assert plan["modeling_app"]["name"] == "team"


# Enterprise is priced by sales


async def test_enterprise_without_a_price_requires_payment(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    org = await world.org(admin)
    url = "/org/payment/subscriptions"
    body = {"modeling_app": "enterprise"}
    for method in ("POST", "PUT"):
        response = await client.request(method, url, headers=admin.headers, json=body)
        assert "sales" in assert_error(response, 402, "payment_required")
    assert await subscription_row(engine, org.id) is None

    await ok(await client.post(url, headers=admin.headers, json={"modeling_app": "team"}))
    before = await org_balance(client, admin)
    response = await client.put(url, headers=admin.headers, json=body)
    assert "sales" in assert_error(response, 402, "payment_required")
    assert await org_balance(client, admin) == before
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert row["tier"] == "team"
    assert len(await ledger(engine, org.id)) == 1


async def test_staff_enterprise_pricing_then_enterprise_works(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    pricing_url = f"/orgs/{org.id}/enterprise/pricing"
    forbidden = await client.put(pricing_url, headers=admin.headers, json=ENTERPRISE_PRICE)
    assert_error(forbidden, 403, "forbidden")

    priced = await set_enterprise_price(client, staff, org.id, ENTERPRISE_PRICE)
    assert priced["modeling_app"]["name"] == "enterprise"
    assert priced["modeling_app"]["price"] == ENTERPRISE_PRICE
    assert priced["modeling_app"]["monthly_pay_as_you_go_api_credits"] == 2000
    balance = await org_balance(client, admin)
    assert balance["modeling_app_enterprise_price"] == ENTERPRISE_PRICE
    assert balance["subscription_details"] is None

    url = "/org/payment/subscriptions"
    body = {"modeling_app": "enterprise"}
    subscribed = await ok(await client.post(url, headers=admin.headers, json=body))
    assert subscribed == priced
    balance = await org_balance(client, admin)
    assert balance["modeling_app_enterprise_price"] == ENTERPRISE_PRICE
    assert balance["subscription_details"]["modeling_app"]["price"] == ENTERPRISE_PRICE
    assert balance["monthly_api_credits_remaining_monetary_value"] == "1000.00"
    staff_view = await ok(
        await client.get(f"/orgs/{org.id}/payment/balance", headers=staff.headers)
    )
    assert staff_view == balance

    # A new agreed price shows at once; numbers are accepted as well as strings.
    flat = {"type": "flat", "interval": "year", "price": 50000.5}
    await set_enterprise_price(client, staff, org.id, flat)
    shown = {"type": "flat", "interval": "year", "price": "50000.50"}
    balance = await org_balance(client, admin)
    assert balance["modeling_app_enterprise_price"] == shown
    assert balance["subscription_details"]["modeling_app"]["price"] == shown
    got = await ok(await client.get(url, headers=admin.headers))
    assert got["modeling_app"]["price"] == shown


# pay_annually, staff changes, the subscription id


async def test_pay_annually_is_stored_and_kept_when_null(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    url = "/user/payment/subscriptions"

    async def put_and_read(body: dict[str, Any]) -> bool:
        await ok(await client.put(url, headers=alice.headers, json=body))
        row = await subscription_row(engine, alice.id)
        assert row is not None
        return bool(row["pay_annually"])

    assert await put_and_read({"modeling_app": "pro", "pay_annually": True}) is True
    assert await put_and_read({"modeling_app": "free", "pay_annually": None}) is True
    assert await put_and_read({"modeling_app": "pro"}) is True
    assert await put_and_read({"modeling_app": "pro", "pay_annually": False}) is False
    assert await put_and_read({"modeling_app": "free", "pay_annually": None}) is False

    admin = await world.user()
    org = await world.org(admin)
    body = {"modeling_app": "team", "pay_annually": True}
    await ok(await client.post("/org/payment/subscriptions", headers=admin.headers, json=body))
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert row["pay_annually"] is True
    body = {"modeling_app": "team", "pay_annually": None}
    await ok(await client.put("/org/payment/subscriptions", headers=admin.headers, json=body))
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert row["pay_annually"] is True


async def test_staff_changes_a_users_plan_by_email_and_by_id(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    alice = await world.user("Alice.Staffed@example.com")
    by_email = await ok(
        await client.put(
            "/users/ALICE.STAFFED@example.com/payment/subscriptions",
            headers=staff.headers,
            json={"modeling_app": "pro", "pay_annually": True},
        )
    )
    assert by_email["modeling_app"]["name"] == "pro"
    balance = await user_balance(client, alice)
    assert balance["subscription_details"] == by_email
    assert balance["monthly_api_credits_remaining_monetary_value"] == "100.00"

    by_id = await ok(
        await client.put(
            f"/users/{alice.id}/payment/subscriptions",
            headers=staff.headers,
            json={"modeling_app": "free"},
        )
    )
    assert by_id["modeling_app"]["name"] == "free"
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    row = await subscription_row(engine, alice.id)
    assert row is not None
    assert (row["tier"], row["pay_annually"]) == ("free", True)

    changes = await ledger(engine, alice.id, "plan_change")
    assert [(e["delta_micros"], e["actor"], e["reference"]) for e in changes] == [
        (90_000_000, staff.id, row["id"]),
        (-90_000_000, staff.id, row["id"]),
    ]
    # Staff only, and the user must exist.
    denied = await client.put(
        f"/users/{alice.id}/payment/subscriptions",
        headers=alice.headers,
        json={"modeling_app": "pro"},
    )
    assert_error(denied, 403, "forbidden")
    unknown = await client.put(
        "/users/nobody@example.com/payment/subscriptions",
        headers=staff.headers,
        json={"modeling_app": "pro"},
    )
    assert_error(unknown, 404, "not_found")
    malformed = await client.put(
        "/users/not-a-uuid/payment/subscriptions",
        headers=staff.headers,
        json={"modeling_app": "pro"},
    )
    assert_error(malformed, 400, "bad_request")
    malformed_by_user = await client.put(
        "/users/not-a-uuid/payment/subscriptions",
        headers=alice.headers,
        json={"modeling_app": "pro"},
    )
    assert_error(malformed_by_user, 403, "forbidden")


async def test_subscription_id_is_stable_across_plan_changes(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff = await world.user(staff=True)
    alice = await world.user()
    first = (await user_balance(client, alice))["subscription_id"]
    assert first is not None
    url = "/user/payment/subscriptions"
    await ok(await client.post(url, headers=alice.headers, json={"modeling_app": "pro"}))
    assert (await user_balance(client, alice))["subscription_id"] == first
    await ok(await client.put(url, headers=alice.headers, json={"modeling_app": "free"}))
    assert (await user_balance(client, alice))["subscription_id"] == first
    await ok(
        await client.put(
            f"/users/{alice.id}/payment/subscriptions",
            headers=staff.headers,
            json={"modeling_app": "pro"},
        )
    )
    assert (await user_balance(client, alice))["subscription_id"] == first
    row = await subscription_row(engine, alice.id)
    assert row is not None
    assert row["id"] == first
    references = {e["reference"] for e in await ledger(engine, alice.id, "plan_change")}
    assert references == {first}

    admin = await world.user()
    org = await world.org(admin)
    await set_enterprise_price(client, staff, org.id, ENTERPRISE_PRICE)
    org_url = "/org/payment/subscriptions"
    await ok(await client.post(org_url, headers=admin.headers, json={"modeling_app": "team"}))
    org_first = (await org_balance(client, admin))["subscription_id"]
    assert org_first is not None
    assert org_first != first
    for tier in ("enterprise", "team"):
        body = {"modeling_app": tier}
        await ok(await client.put(org_url, headers=admin.headers, json=body))
        assert (await org_balance(client, admin))["subscription_id"] == org_first
    references = {e["reference"] for e in await ledger(engine, org.id, "plan_change")}
    assert references == {org_first}


# The monthly refresh


async def test_monthly_refresh_resets_to_the_grant_once_per_period(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff = await world.user(staff=True)
    alice = await world.user()
    row = await subscription_row(engine, alice.id)
    assert row is not None
    assert row["anchor_at"] == START
    await set_monthly(client, staff, f"/users/{alice.id}", "3.00")

    # One second before anchor + 1 month nothing is due.
    clock.now = datetime(2026, 2, 15, 11, 59, 59, tzinfo=UTC)
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "3.00"
    assert await ledger(engine, alice.id, "refresh") == []

    clock.now = datetime(2026, 2, 15, 12, 0, 1, tzinfo=UTC)
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert balance["monthly_api_credits_remaining"] == 20
    refreshes = await ledger(engine, alice.id, "refresh")
    assert [
        (e["bucket"], e["delta_micros"], e["balance_after_micros"], e["actor"], e["reference"])
        for e in refreshes
    ] == [("monthly", 7_000_000, 10_000_000, "system", row["id"])]
    refreshed = await subscription_row(engine, alice.id)
    assert refreshed is not None
    assert refreshed["period_start"] == datetime(2026, 2, 15, 12, tzinfo=UTC)
    assert refreshed["anchor_at"] == START

    # A second read in the same period adds nothing, even after a staff change.
    clock.advance(days=10)
    await set_monthly(client, staff, f"/users/{alice.id}", "2.50")
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "2.50"
    assert len(await ledger(engine, alice.id, "refresh")) == 1

    # Crossing the second month refreshes again.
    clock.now = datetime(2026, 3, 15, 12, 0, 1, tzinfo=UTC)
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    refreshes = await ledger(engine, alice.id, "refresh")
    assert [e["delta_micros"] for e in refreshes] == [7_000_000, 7_500_000]
    assert (await user_balance(client, alice))["monthly_api_credits_remaining"] == 20
    assert len(await ledger(engine, alice.id, "refresh")) == 2


async def test_a_plan_change_after_the_boundary_refreshes_first(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff = await world.user(staff=True)
    alice = await world.user()
    await set_monthly(client, staff, f"/users/{alice.id}", "3.00")
    clock.now = datetime(2026, 2, 20, tzinfo=UTC)
    url = "/user/payment/subscriptions"
    await ok(await client.put(url, headers=alice.headers, json={"modeling_app": "pro"}))
    entries = await ledger(engine, alice.id)
    assert [(e["reason"], e["delta_micros"], e["balance_after_micros"]) for e in entries] == [
        ("grant", 10_000_000, 10_000_000),
        ("staff_change", -7_000_000, 3_000_000),
        ("refresh", 7_000_000, 10_000_000),
        ("plan_change", 90_000_000, 100_000_000),
    ]
    balance = await user_balance(client, alice)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "100.00"
    assert len(await ledger(engine, alice.id)) == 4


async def test_monthly_refresh_after_a_long_gap_resets_once(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    url = "/org/payment/subscriptions"
    await ok(await client.post(url, headers=admin.headers, json={"modeling_app": "team"}))
    await set_monthly(client, staff, f"/orgs/{org.id}", "1.00")

    clock.now = datetime(2026, 3, 20, tzinfo=UTC)
    balance = await org_balance(client, admin)
    assert balance["monthly_api_credits_remaining_monetary_value"] == "250.00"
    refreshes = await ledger(engine, org.id, "refresh")
    assert [(e["delta_micros"], e["actor"]) for e in refreshes] == [(249_000_000, "system")]
    row = await subscription_row(engine, org.id)
    assert row is not None
    assert row["period_start"] == datetime(2026, 3, 15, 12, tzinfo=UTC)
    await org_balance(client, admin)
    assert len(await ledger(engine, org.id, "refresh")) == 1


async def test_include_total_due_false_gives_null(client: httpx.AsyncClient, world: World) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    urls = [
        ("/user/payment/balance", admin),
        ("/org/payment/balance", admin),
        (f"/users/{admin.id}/payment/balance", staff),
        (f"/orgs/{org.id}/payment/balance", staff),
    ]
    for url, caller in urls:
        hidden = await ok(
            await client.get(url, headers=caller.headers, params={"include_total_due": "false"})
        )
        assert hidden["total_due"] is None
        shown = await ok(
            await client.get(url, headers=caller.headers, params={"include_total_due": "true"})
        )
        assert shown["total_due"] == "0.00"
        default = await ok(await client.get(url, headers=caller.headers))
        assert default["total_due"] == "0.00"
        assert {**hidden, "total_due": "0.00"} == default
