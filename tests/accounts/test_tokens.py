"""API tokens a user manages, org service accounts, and revocation.

A change to a token (revoked, its user deleted or re-roled) reaches a server's token cache within
its TTL (half a second), so the tests that expect a refusal poll for it with a generous deadline
instead of timing anything.
"""

import asyncio
import hashlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import kittycad.models as sdk
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import BACKEND, Clock, World
from tests.support.errors import assert_error
from tests.support.http import bearer, shown
from zoopay.accounts import schemas
from zoopay.accounts import service as accounts
from zoopay.accounts.cache import TokenCache
from zoopay.db.engine import transaction
from zoopay.db.tables import api_tokens

DEADLINE_SECONDS = 20  # far past the cache's half second: only a real failure waits this long


async def eventually(send: Callable[[], Awaitable[httpx.Response]], status: int) -> httpx.Response:
    """Send until the answer has `status` (a change takes up to the token cache's TTL to reach a
    server); fail if it never does within a generous deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        response = await send()
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        await asyncio.sleep(0.05)


async def token_row(engine: AsyncEngine, secret: str) -> dict[str, Any]:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    async with engine.connect() as conn:
        query = select(api_tokens).where(api_tokens.c.token_hash == digest)
        return dict((await conn.execute(query)).mappings().one())


# --- a user's own tokens ------------------------------------------------------------------------


async def test_a_user_creates_lists_reads_and_revokes_tokens(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    first = await token_row(engine, alice.token)

    clock.advance(seconds=1)
    created = await client.post(
        "/user/api-tokens", params={"label": "laptop"}, headers=alice.headers
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    new = created.json()
    secret = new["token"]
    assert secret.startswith("zoo_") and len(secret) == 47
    assert new == {
        "created_at": clock.now.isoformat().replace("+00:00", "Z"),
        "id": new["id"],
        "is_valid": True,
        "label": "laptop",
        "token": secret,
        "updated_at": clock.now.isoformat().replace("+00:00", "Z"),
        "user_id": alice.id,
    }
    # The new token works at once, as alice; only its hash is stored.
    balance = await client.get("/user/payment/balance", headers=bearer(secret))
    assert balance.json()["map_id"] == alice.id
    stored = await token_row(engine, secret)
    assert (stored["id"], stored["user_id"], stored["label"]) == (new["id"], alice.id, "laptop")

    listed = await client.get("/user/api-tokens", headers=alice.headers)
    assert listed.status_code == 200
    assert [(t["id"], t["label"], t["token"]) for t in listed.json()["items"]] == [
        (first["id"], None, shown(alice.token)),
        (new["id"], "laptop", shown(secret)),
    ]
    assert listed.json()["next_page"] is None
    # No answer but the creation carries a secret.
    assert secret not in listed.text and alice.token not in listed.text

    got = await client.get(f"/user/api-tokens/{new['id']}", headers=alice.headers)
    assert got.json() == {**new, "token": shown(secret)}

    clock.advance(minutes=5)
    deleted = await client.delete(f"/user/api-tokens/{new['id']}", headers=alice.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    await eventually(lambda: client.get("/user/payment/balance", headers=bearer(secret)), 401)
    got = await client.get(f"/user/api-tokens/{new['id']}", headers=alice.headers)
    revoked_at = clock.now.isoformat().replace("+00:00", "Z")
    assert got.json() == {
        **new,
        "token": shown(secret),
        "is_valid": False,
        "updated_at": revoked_at,
    }
    # Revoking again changes nothing; the other token still works.
    again = await client.delete(f"/user/api-tokens/{new['id']}", headers=alice.headers)
    assert again.status_code == 204
    assert (await token_row(engine, secret))["revoked_at"] is not None
    assert (await client.get("/user/payment/balance", headers=alice.headers)).status_code == 200


async def test_token_listings_page_and_sort(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    alice = await world.user()
    ids = []
    for label in ("a", "b", "c"):
        clock.advance(seconds=1)
        made = await client.post("/user/api-tokens", params={"label": label}, headers=alice.headers)
        ids.append(made.json()["id"])

    async def labels(**params: Any) -> tuple[list[str | None], str | None]:
        page = (await client.get("/user/api-tokens", params=params, headers=alice.headers)).json()
        return [item["label"] for item in page["items"]], page["next_page"]

    first, token = await labels(limit=2)
    assert first == [None, "a"] and token is not None
    assert await labels(limit=2, page_token=token) == (["b", "c"], None)
    newest, token = await labels(limit=3, sort_by="created_at_descending")
    assert newest == ["c", "b", "a"] and token is not None
    assert await labels(limit=3, sort_by="created_at_descending", page_token=token) == (
        [None],
        None,
    )


async def test_another_users_token_is_not_found_and_keeps_working(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice, mallory = await world.user(), await world.user(staff=True)
    alice_token = (await token_row(engine, alice.token))["id"]
    for method in ("GET", "DELETE"):
        refused = await client.request(
            method, f"/user/api-tokens/{alice_token}", headers=mallory.headers
        )
        # 404, word for word as for an id that never existed: nothing tells it is a token.
        assert_error(refused, 404)
        assert refused.json()["message"] == f"no token {alice_token}"
    listed = await client.get("/user/api-tokens", headers=mallory.headers)
    assert [item["user_id"] for item in listed.json()["items"]] == [mallory.id]
    assert (await token_row(engine, alice.token))["revoked_at"] is None
    assert (await client.get("/user/payment/balance", headers=alice.headers)).status_code == 200


async def test_a_revoked_token_is_refused_everywhere_including_the_hot_paths(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff = await world.user(staff=True)
    made = await client.post("/user/api-tokens", headers=staff.headers)
    secret, token_id = made.json()["token"], made.json()["id"]
    call = {
        "id": str(uuid.uuid4()),
        "user_id": staff.id,
        "endpoint": "/file/conversion",
        "method": "POST",
        "status_code": 200,
        "started_at": "2026-01-15T11:00:00Z",
        "completed_at": "2026-01-15T11:00:01Z",
    }
    requests = [
        ("GET", "/user/payment/balance", None),  # hot path
        ("POST", "/api-calls/authorize", {"user_id": staff.id, "endpoint": "/file/conversion"}),
        ("POST", "/api-calls", call),  # hot path
        ("GET", "/user/api-tokens", None),
        ("GET", f"/users/{staff.id}/payment/balance", None),
        ("GET", "/api-calls", None),
    ]
    for method, path, body in requests:  # all work, and the cache holds the token
        response = await client.request(method, path, json=body, headers=bearer(secret))
        assert response.status_code in (200, 201), (path, response.text)

    async with transaction(engine) as conn:
        await accounts.revoke_token(conn, token_id=token_id, now=clock.now)

    for method, path, body in requests:
        refused = await eventually(
            lambda m=method, p=path, b=body: client.request(m, p, json=b, headers=bearer(secret)),
            401,
        )
        assert_error(refused, 401)
    # The staff user's own first token is untouched.
    assert (await client.get("/api-calls", headers=staff.headers)).status_code == 200


# --- org service accounts -----------------------------------------------------------------------


async def test_an_org_admin_manages_service_accounts_that_read_only_the_org(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, member, rival = await world.user(), await world.user(), await world.user()
    org = await world.org(admin, member)
    await world.org(rival, name="Rival")

    made = await client.post("/org/service-accounts", params={"label": "ci"}, headers=admin.headers)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    account = made.json()
    secret = account["token"]
    moment = clock.now.isoformat().replace("+00:00", "Z")
    assert account == {
        "created_at": moment,
        "id": account["id"],
        "is_valid": True,
        "label": "ci",
        "org_id": org.id,
        "token": secret,
        "updated_at": moment,
    }
    stored = await token_row(engine, secret)
    assert (stored["org_id"], stored["user_id"], stored["service_name"]) == (org.id, None, None)

    listed = await client.get("/org/service-accounts", headers=admin.headers)
    assert listed.json() == {"items": [{**account, "token": shown(secret)}], "next_page": None}
    got = await client.get(f"/org/service-accounts/{account['id']}", headers=admin.headers)
    assert got.json() == {**account, "token": shown(secret)}
    # Only admins of this org: a member is refused, another org's admin sees nothing.
    assert_error(await client.get("/org/service-accounts", headers=member.headers), 403)
    for method in ("GET", "DELETE"):
        path = f"/org/service-accounts/{account['id']}"
        assert_error(await client.request(method, path, headers=rival.headers), 404)
    rival_list = await client.get("/org/service-accounts", headers=rival.headers)
    assert rival_list.json() == {"items": [], "next_page": None}

    # What it may do: read its org's balance and plan. Nothing else.
    balance = await client.get("/org/payment/balance", headers=bearer(secret))
    assert (balance.status_code, balance.json()["map_id"]) == (200, org.id)
    plan = await client.get("/org/payment/subscriptions", headers=bearer(secret))
    assert_error(plan, 404)  # the org has no plan yet, as its members are told
    await client.put(
        "/org/payment/subscriptions", json={"modeling_app": "team"}, headers=admin.headers
    )
    plan = await client.get("/org/payment/subscriptions", headers=bearer(secret))
    assert plan.json()["modeling_app"]["name"] == "team"
    refused = [
        ("GET", "/user/payment/balance", None),
        ("GET", "/user/api-tokens", None),
        ("POST", "/user/api-tokens", None),
        ("GET", "/org", None),
        ("GET", "/org/members", None),
        ("GET", "/org/service-accounts", None),
        ("POST", "/org/service-accounts", None),
        ("PUT", "/org/payment/subscriptions", {"modeling_app": "team"}),
        ("GET", "/org/api-calls", None),
        ("GET", "/org/payment/ledger", None),
        ("POST", "/api-calls/authorize", {"user_id": admin.id, "endpoint": "/file/conversion"}),
        ("GET", f"/orgs/{org.id}/payment/balance", None),
    ]
    for method, path, body in refused:
        response = await client.request(method, path, json=body, headers=bearer(secret))
        assert_error(response, 403)

    clock.advance(minutes=1)
    deleted = await client.delete(f"/org/service-accounts/{account['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    await eventually(lambda: client.get("/org/payment/balance", headers=bearer(secret)), 401)
    got = await client.get(f"/org/service-accounts/{account['id']}", headers=admin.headers)
    assert (got.json()["is_valid"], got.json()["updated_at"]) == (
        False,
        clock.now.isoformat().replace("+00:00", "Z"),
    )


# --- the operator: deleted users, staff changes --------------------------------------------------


async def test_a_deleted_user_is_refused_and_keeps_their_records(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    second = await client.post("/user/api-tokens", headers=alice.headers)
    assert (await client.get("/user/payment/balance", headers=alice.headers)).status_code == 200

    async with transaction(engine) as conn:
        deleted = await accounts.delete_user(conn, user=alice.user, now=clock.now)
    assert deleted.deleted_at == clock.now

    for token in (alice.token, second.json()["token"]):
        await eventually(
            lambda t=token: client.get("/user/payment/balance", headers=bearer(t)), 401
        )
    # Staff still see the balance, and no new token can be made for a deleted user.
    kept = await client.get(f"/users/{alice.id}/payment/balance", headers=staff.headers)
    assert kept.json()["monthly_api_credits_remaining_monetary_value"] == "10.00"
    async with transaction(engine) as conn:
        with pytest.raises(accounts.Conflict):
            await accounts.create_token(conn, user=deleted, now=clock.now)


async def test_a_staff_change_takes_effect_without_a_restart(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    path = f"/users/{alice.id}/payment/balance"
    assert (await client.get(path, headers=staff.headers)).status_code == 200
    async with transaction(engine) as conn:
        await accounts.set_staff(conn, user=staff.user, is_staff=False, now=clock.now)
    await eventually(lambda: client.get(path, headers=staff.headers), 403)
    async with transaction(engine) as conn:
        await accounts.set_staff(conn, user=staff.user, is_staff=True, now=clock.now)
    await eventually(lambda: client.get(path, headers=staff.headers), 200)


# --- the cache ----------------------------------------------------------------------------------


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_trusts_an_entry_for_its_ttl_and_no_longer(
    world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    ticks = Ticks()
    cache = TokenCache(engine, ttl_seconds=0.5, clock=ticks)
    principal = await cache.principal(alice.token)
    assert principal is not None and principal.user == alice.user

    token_id = (await token_row(engine, alice.token))["id"]
    async with transaction(engine) as conn:
        await accounts.revoke_token(conn, token_id=token_id, now=clock.now)
    ticks.now += 0.499  # within the TTL: the cached answer, no database round trip
    assert await cache.principal(alice.token) == principal
    ticks.now += 0.001  # the TTL is over: looked up again, and refused
    assert await cache.principal(alice.token) is None
    # A refusal is not cached: a token that appears later works at once.
    assert await cache.principal("zoo_not-yet") is None
    assert len(cache._entries) == 0


@asynccontextmanager
async def write_lock(database_url: str) -> AsyncIterator[None]:
    """Another process's writer, holding its lock until the block ends: SQLite's one write
    lock, or on PostgreSQL a lock on the tokens and users tables that lets only reads through."""
    if BACKEND == "sqlite":
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE api_tokens, users IN EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_token_lookups_do_not_wait_for_a_writer(
    client: httpx.AsyncClient, world: World, database_url: str
) -> None:
    """A bad token answers 401, and a good one authenticates, while a writer holds its lock. The
    balance read is a hot path that reads without a transaction, so only authentication could
    wait; before the fix a lookup began a transaction, and on SQLite queued for the lock."""
    alice = await world.user()
    async with write_lock(database_url):
        bad, good = [
            await asyncio.wait_for(client.get("/user/payment/balance", headers=h), timeout=10)
            for h in ({"Authorization": "Bearer zoo_random-guess"}, alice.headers)
        ]
    assert_error(bad, 401)
    assert (good.status_code, good.json()["map_id"]) == (200, alice.id)


def test_the_wire_models_have_exactly_kittycad_fields() -> None:
    """kittycad 1.2.0 forbids unknown fields; 1.8.0's models have the same fields (checked
    end to end in tests/e2e/test_sdk_tokens.py)."""
    pairs = [
        (schemas.ApiToken, sdk.ApiToken),
        (schemas.ApiTokenResultsPage, sdk.ApiTokenResultsPage),
        (schemas.ServiceAccount, sdk.ServiceAccount),
        (schemas.ServiceAccountResultsPage, sdk.ServiceAccountResultsPage),
    ]
    for ours, theirs in pairs:
        assert set(ours.model_fields) == set(theirs.model_fields), ours.__name__


async def test_the_openapi_document_declares_the_token_endpoints(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    answers = {
        (path, method): set(operation["responses"])
        for path, operations in paths.items()
        if "api-tokens" in path or "service-accounts" in path
        for method, operation in operations.items()
    }
    every = {"401", "403", "503"}
    for collection in ("/user/api-tokens", "/org/service-accounts"):
        assert answers[(collection, "get")] == {"200", "400", *every} | (
            {"404"} if collection.startswith("/org") else set()
        )
        assert answers[(collection, "post")] == {"201", "400", *every} | (
            {"404"} if collection.startswith("/org") else set()
        )
        item = collection + "/{token}"
        assert answers[(item, "get")] == {"200", "400", "404", *every}
        assert answers[(item, "delete")] == {"204", "400", "404", *every}
