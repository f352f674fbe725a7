"""Accounts: the `zoopay` command (users, tokens, orgs, migrations, the first-start staff
user of `zoopay serve`) and the org API (create, read, members and their pagination)."""

import hashlib
import json
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from tests.e2e.conftest import free_port, stop, wait_until_serving
from tests.support.cli import CLI_LIMIT_SECONDS, ZOOPAY, zoopay_env
from tests.support.errors import assert_error
from tests.support.http import bearer, ok
from tests.support.reference import reference_fields
from zoopay.billing.upgrades import seats_of
from zoopay.db.tables import api_tokens, metadata, org_members, users
from zoopay.ledger.service import Customer

TOKEN = re.compile(r"zoo_[A-Za-z0-9_-]+")


def zoopay(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZOOPAY), *args],
        env=zoopay_env(database_url),
        capture_output=True,
        text=True,
        timeout=CLI_LIMIT_SECONDS,
        check=False,
    )


def zoopay_json(database_url: str, *args: str) -> dict[str, Any]:
    result = zoopay(database_url, *args)
    assert result.returncode == 0, f"zoopay {' '.join(args)}: {result.stderr}"
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def zoopay_error(database_url: str, *args: str) -> dict[str, Any]:
    """Run a command that must fail with a JSON error on stderr and nothing on stdout."""
    result = zoopay(database_url, *args)
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    loaded: dict[str, Any] = json.loads(result.stderr)
    assert set(loaded) == {"error_code", "message"}
    return loaded


def email() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}@example.com"


# The zoopay command


async def test_users_create_prints_id_email_and_a_working_token(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, world: World
) -> None:
    address = email()
    created = zoopay_json(
        database_url, "users", "create", address.upper(), "--name", "Ada L", "--staff"
    )
    assert set(created) == {"id", "email", "token"}
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["email"] == address
    assert created["token"].startswith("zoo_")

    headers = bearer(created["token"])
    balance = await ok(await client.get("/user/payment/balance", headers=headers))
    assert balance["map_id"] == created["id"]
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert balance["subscription_details"]["modeling_app"]["name"] == "free"
    plain = await world.user()
    other = await ok(await client.get(f"/users/{plain.id}/payment/balance", headers=headers))
    assert other["map_id"] == plain.id
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == created["id"]))).mappings()
        stored = row.one()
    assert (stored["email"], stored["name"], stored["is_staff"]) == (address, "Ada L", True)


async def test_users_create_without_staff_is_refused_the_staff_endpoints(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, world: World
) -> None:
    created = zoopay_json(database_url, "users", "create", email())
    other = await world.user()
    denied = await client.get(
        f"/users/{other.id}/payment/balance", headers=bearer(created["token"])
    )
    assert_error(denied, 403, "forbidden")
    own = await ok(await client.get("/user/payment/balance", headers=bearer(created["token"])))
    assert own["map_id"] == created["id"]
    async with engine.connect() as conn:
        query = select(users.c.name, users.c.is_staff).where(users.c.id == created["id"])
        assert (await conn.execute(query)).one() == (None, False)


async def test_users_create_with_a_taken_email_fails_with_a_json_error(
    database_url: str, engine: AsyncEngine
) -> None:
    address = email()
    first = zoopay_json(database_url, "users", "create", address)
    for again in (address, address.upper()):
        error = zoopay_error(database_url, "users", "create", again)
        assert error["error_code"] == "conflict"
        assert address in error["message"]
    bad = zoopay_error(database_url, "users", "create", "not-an-email")
    assert bad["error_code"] == "bad_request"
    async with engine.connect() as conn:
        ids = (await conn.execute(select(users.c.id))).scalars().all()
    assert ids == [first["id"]]


async def test_names_longer_than_their_columns_are_refused_and_change_nothing(
    database_url: str, engine: AsyncEngine, world: World
) -> None:
    """The command takes what the API bounds (a name of 200 characters, a service's of 100):
    longer was a traceback on PostgreSQL and stored as given on SQLite."""
    admin = await world.user()
    too_long = [
        ("users", "create", email(), "--name", "N" * 201),
        ("orgs", "create", "O" * 201, "--admin", admin.email),
        ("tokens", "create", "--service", "s" * 101),
    ]
    for args in too_long:
        error = zoopay_error(database_url, *args)
        assert error["error_code"] == "bad_request", args
        assert "at most" in error["message"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(users.c.id))).scalars().all() == [admin.id]
        assert (await conn.execute(select(org_members.c.user_id))).scalars().all() == []
        assert (await conn.execute(select(api_tokens.c.service_name))).scalars().all() == [None]
    # At the limits, each is taken.
    zoopay_json(database_url, "users", "create", email(), "--name", "N" * 200)
    zoopay_json(database_url, "orgs", "create", "O" * 200, "--admin", admin.email)
    zoopay_json(database_url, "tokens", "create", "--service", "s" * 100)


async def test_tokens_create_stores_only_a_sha256_hash(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine
) -> None:
    address = email()
    created = zoopay_json(database_url, "users", "create", address)
    second = zoopay_json(database_url, "tokens", "create", address.upper())
    assert set(second) == {"id", "token"}
    tokens = [created["token"], second["token"]]
    assert tokens[0] != tokens[1]
    for token in tokens:
        balance = await ok(await client.get("/user/payment/balance", headers=bearer(token)))
        assert balance["map_id"] == created["id"]

    async with engine.connect() as conn:
        stored = (await conn.execute(select(api_tokens))).mappings().all()
        assert {row["user_id"] for row in stored} == {created["id"]}
        assert second["id"] in {row["id"] for row in stored}
        assert sorted(row["token_hash"] for row in stored) == sorted(
            hashlib.sha256(token.encode()).hexdigest() for token in tokens
        )
        # The plaintext is nowhere in the database.
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                for value in row:
                    for token in tokens:
                        assert token not in str(value), table.name

    unknown = zoopay_error(database_url, "tokens", "create", "nobody@example.com")
    assert unknown["error_code"] == "not_found"


async def test_orgs_create_and_add_member(
    client: httpx.AsyncClient, database_url: str, world: World
) -> None:
    admin, member, second_admin = [await world.user() for _ in range(3)]
    org = zoopay_json(database_url, "orgs", "create", "Acme Robotics", "--admin", admin.email)
    assert set(org) == {"id", "name"}
    assert org["name"] == "Acme Robotics"
    assert str(uuid.UUID(org["id"])) == org["id"]
    got = await ok(await client.get("/org", headers=admin.headers))
    assert (got["id"], got["name"], got["billing_email"]) == (org["id"], org["name"], admin.email)

    added = zoopay_json(
        database_url, "orgs", "add-member", org["id"], member.email, "--role", "member"
    )
    assert added == {"org_id": org["id"], "user_id": member.id, "role": "member"}
    promoted = zoopay_json(
        database_url, "orgs", "add-member", org["id"], second_admin.email, "--role", "admin"
    )
    assert promoted == {"org_id": org["id"], "user_id": second_admin.id, "role": "admin"}

    page = await ok(await client.get("/org/members", headers=second_admin.headers))
    roles = {m["id"]: m["role"] for m in page["items"]}
    assert roles == {admin.id: "admin", member.id: "member", second_admin.id: "admin"}
    assert_error(await client.get("/org/members", headers=member.headers), 403, "forbidden")
    assert (await ok(await client.get("/org", headers=member.headers)))["id"] == org["id"]

    again = zoopay_error(database_url, "orgs", "add-member", org["id"], member.email)
    assert again["error_code"] == "conflict"
    busy = zoopay_error(database_url, "orgs", "create", "Second", "--admin", admin.email)
    assert busy["error_code"] == "conflict"
    missing = zoopay_error(database_url, "orgs", "add-member", str(uuid.uuid4()), admin.email)
    assert missing["error_code"] == "not_found"


async def test_a_deleted_user_joins_no_org(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, world: World
) -> None:
    """A deleted user can hold no token and sign in nowhere: made an org's admin, the org had
    no one to run it; added as a member, they took a seat they can never use."""
    staff, admin, gone = [await world.user(staff=i == 0) for i in range(3)]
    org = zoopay_json(database_url, "orgs", "create", "Acme", "--admin", admin.email)
    zoopay_json(database_url, "users", "delete", gone.email)

    created = zoopay_error(database_url, "orgs", "create", "Ghost Co", "--admin", gone.email)
    added = zoopay_error(database_url, "orgs", "add-member", org["id"], gone.email)
    for error in (created, added):
        assert (error["error_code"], error["message"]) == ("conflict", f"{gone.email} is deleted")
    body = {"email": gone.email, "role": "admin"}
    by_staff = await client.post(f"/orgs/{org['id']}/members", headers=staff.headers, json=body)
    assert assert_error(by_staff, 409, "conflict") == f"{gone.email} is deleted"
    async with engine.connect() as conn:
        members = (await conn.execute(select(org_members.c.user_id))).scalars().all()
    assert members == [admin.id]


async def test_a_deleted_user_leaves_their_org_and_the_last_admin_is_not_deleted(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, world: World
) -> None:
    """Deleting a member frees their seat (billed per member, usable by no one); the org's last
    admin is not deleted while others are in it, as they could not leave: it would have no one
    to run it."""
    admin, member = await world.user(), await world.user()
    org = await world.org(admin, member)

    refused = zoopay_error(database_url, "users", "delete", admin.email)
    assert refused["error_code"] == "conflict"
    assert "at least one admin" in refused["message"]
    await ok(await client.get("/org/members", headers=admin.headers))

    zoopay_json(database_url, "users", "delete", member.email)
    async with engine.connect() as conn:
        members = (await conn.execute(select(org_members.c.user_id))).scalars().all()
        gone = (await conn.execute(select(users).where(users.c.id == member.id))).mappings().one()
        admin_row = (await conn.execute(select(users).where(users.c.id == admin.id))).mappings()
        assert admin_row.one()["deleted_at"] is None
        assert await seats_of(conn, Customer("org", org.id)) == 1
    assert members == [admin.id]
    assert gone["deleted_at"] is not None
    listed = await ok(await client.get("/org/members", headers=admin.headers))
    assert [item["id"] for item in listed["items"]] == [admin.id]

    # Alone, the last admin may go, as they may leave: the org stays, empty, for staff.
    zoopay_json(database_url, "users", "delete", admin.email)
    async with engine.connect() as conn:
        assert (await conn.execute(select(org_members))).all() == []


async def test_db_upgrade_is_idempotent(
    tmp_path: Path, database_url: str, engine: AsyncEngine, world: World
) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        assert zoopay_json(fresh, "db", "upgrade") == {"upgraded": True}
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        versions = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert len(versions) == 1

    # On the run's database, already at the newest schema, it keeps every row.
    person = await world.user()
    for _ in range(2):
        assert zoopay_json(database_url, "db", "upgrade") == {"upgraded": True}
    async with engine.connect() as conn:
        assert (await conn.execute(select(users.c.id))).scalars().all() == [person.id]


# The org API


async def test_post_org_returns_the_org_schema(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    alice = await world.user()
    created = await ok(
        await client.post("/org", headers=alice.headers, json={"name": "Alice Works"}), 201
    )
    assert set(created) == reference_fields("Org")
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["name"] == "Alice Works"
    assert created["billing_email"] == alice.email
    assert created["phone"] == ""
    assert created["stripe_id"] is None
    assert created["block"] is None
    assert datetime.fromisoformat(created["created_at"]) == clock.now
    assert await ok(await client.get("/org", headers=alice.headers)) == created
    members = await ok(await client.get("/org/members", headers=alice.headers))
    assert [(m["id"], m["role"]) for m in members["items"]] == [(alice.id, "admin")]

    bob = await world.user()
    body = {"name": "Bob Co", "billing_email": "Billing@Bob.example", "phone": None}
    bobs = await ok(await client.post("/org", headers=bob.headers, json=body), 201)
    assert bobs["billing_email"] == "billing@bob.example"
    assert bobs["phone"] == ""
    assert bobs["id"] != created["id"]


async def test_post_org_when_already_in_an_org_conflicts(
    client: httpx.AsyncClient, world: World
) -> None:
    admin, member = await world.user(), await world.user()
    org = await world.org(admin, member)
    for person in (admin, member):
        response = await client.post("/org", headers=person.headers, json={"name": "Another"})
        assert_error(response, 409, "conflict")
        assert (await ok(await client.get("/org", headers=person.headers)))["id"] == org.id


async def test_get_org_without_an_org_is_not_found(client: httpx.AsyncClient, world: World) -> None:
    loner = await world.user()
    assert_error(await client.get("/org", headers=loner.headers), 404, "not_found")
    assert_error(await client.get("/org", headers={}), 401, "unauthorized")


async def join(client: httpx.AsyncClient, admin: Person, person: Person, role: str) -> Any:
    """Invite through the API and accept as the invited user: the only way in by consent."""
    body = {"email": person.email, "role": role}
    invitation = await ok(await client.post("/org/members", headers=admin.headers, json=body), 201)
    path = f"/user/org-invitations/{invitation['id']}/accept"
    return await ok(await client.post(path, headers=person.headers))


async def make_members(
    client: httpx.AsyncClient, world: World, clock: Clock, admin: Person, count: int
) -> list[Person]:
    """Members who joined through the API; every other one at the same instant as the last."""
    people = []
    for index in range(count):
        if index % 2 == 0:
            clock.advance(minutes=1)
        person = await world.user()
        await join(client, admin, person, "member")
        people.append(person)
    return people


async def collect(
    client: httpx.AsyncClient, admin: Person, limit: int, sort_by: str | None
) -> tuple[list[dict[str, Any]], list[int]]:
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    params: dict[str, Any] = {"limit": limit}
    if sort_by is not None:
        params["sort_by"] = sort_by
    while True:
        page = await ok(await client.get("/org/members", headers=admin.headers, params=params))
        items += page["items"]
        sizes.append(len(page["items"]))
        if page["next_page"] is None:
            return items, sizes
        params["page_token"] = page["next_page"]


def member_key(member: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(member["created_at"]), member["id"]


@pytest.mark.parametrize(
    ("sort_by", "limit", "sizes"),
    [
        (None, 2, [2, 2, 2, 1]),
        ("created_at_ascending", 3, [3, 3, 1]),
        ("created_at_descending", 2, [2, 2, 2, 1]),
        ("created_at_descending", 1, [1] * 7),
        ("created_at_ascending", 7, [7]),
        ("created_at_descending", 100, [7]),
    ],
)
async def test_members_pagination_lists_each_member_once(
    client: httpx.AsyncClient,
    world: World,
    clock: Clock,
    sort_by: str | None,
    limit: int,
    sizes: list[int],
) -> None:
    admin = await world.user()
    await world.org(admin)
    members = await make_members(client, world, clock, admin, 6)
    everyone = {admin.id, *(m.id for m in members)}

    items, page_sizes = await collect(client, admin, limit, sort_by)
    assert page_sizes == sizes
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == everyone
    descending = sort_by == "created_at_descending"
    assert items == sorted(items, key=member_key, reverse=descending)
    assert ids[0 if not descending else -1] == admin.id
    for item in items:
        assert set(item) == reference_fields("OrgMember")


async def test_members_pagination_rejects_bad_parameters(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = await world.user()
    await world.org(admin)
    for params in (
        {"page_token": "%%%"},
        {"limit": 0},
        {"limit": 1001},
        {"sort_by": "name_ascending"},
    ):
        response = await client.get("/org/members", headers=admin.headers, params=params)
        assert_error(response, 400, "bad_request")


async def test_add_and_remove_members(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, carol = await world.user(), await world.user()
    await world.org(admin)
    added = await join(client, admin, carol, "member")
    assert set(added) == reference_fields("OrgMember")
    assert (added["id"], added["email"], added["role"]) == (carol.id, carol.email, "member")
    balance = await ok(await client.get("/org/payment/balance", headers=carol.headers))
    assert balance["map_id"] == (await ok(await client.get("/org", headers=admin.headers)))["id"]

    again = await client.post(
        "/org/members", headers=admin.headers, json={"email": carol.email, "role": "admin"}
    )
    assert "already belongs to this org" in assert_error(again, 409, "conflict")

    removed = await client.delete(f"/org/members/{carol.id}", headers=admin.headers)
    assert removed.status_code == 204
    assert removed.content == b""
    gone = await client.get("/org/payment/balance", headers=carol.headers)
    assert_error(gone, 404, "not_found")
    assert_error(await client.get("/org", headers=carol.headers), 404, "not_found")
    again_removed = await client.delete(f"/org/members/{carol.id}", headers=admin.headers)
    assert_error(again_removed, 404, "not_found")
    async with engine.connect() as conn:
        rows = (await conn.execute(select(org_members.c.user_id))).scalars().all()
    assert rows == [admin.id]
    # A removed member may start an org of their own.
    await ok(await client.post("/org", headers=carol.headers, json={"name": "Carol's"}), 201)


async def test_the_last_admin_cannot_be_removed(client: httpx.AsyncClient, world: World) -> None:
    admin, second, member = await world.user(), await world.user(), await world.user()
    await world.org(admin, member)
    last = await client.delete(f"/org/members/{admin.id}", headers=admin.headers)
    assert "admin" in assert_error(last, 409, "conflict")

    await join(client, admin, second, "admin")
    first_gone = await client.delete(f"/org/members/{admin.id}", headers=second.headers)
    assert first_gone.status_code == 204
    assert_error(await client.get("/org/payment/balance", headers=admin.headers), 404, "not_found")
    still = await client.delete(f"/org/members/{second.id}", headers=second.headers)
    assert_error(still, 409, "conflict")
    members = await ok(await client.get("/org/members", headers=second.headers))
    assert {(m["id"], m["role"]) for m in members["items"]} == {
        (second.id, "admin"),
        (member.id, "member"),
    }


# The first start of `zoopay serve`


def serve(
    database_url: str, log: Path, finalizers: Callable[[Callable[[], None]], None]
) -> tuple["subprocess.Popen[bytes]", str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ZOOPAY), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=zoopay_env(database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finalizers(lambda: stop(process))
    base_url = f"http://127.0.0.1:{port}"
    wait_until_serving(process, base_url, log)
    return process, base_url


def test_serve_prints_a_staff_token_on_the_first_start_only(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = tmp_path / "serve.db"
    url = f"sqlite:///{database}"
    assert zoopay_json(url, "db", "upgrade") == {"upgraded": True}
    plain = zoopay_json(url, "users", "create", "plain@example.com")

    first_log = tmp_path / "first.log"
    first, base_url = serve(url, first_log, request.addfinalizer)
    output = first_log.read_text()
    tokens = TOKEN.findall(output)
    assert len(tokens) == 1, output
    assert output.count("staff@zoopay.local") == 1
    token = tokens[0]
    with httpx.Client(base_url=base_url, headers=bearer(token), timeout=30) as http:
        own = http.get("/users/staff@zoopay.local/payment/balance")
        assert own.status_code == 200, own.text
        other = http.get(f"/users/{plain['id']}/payment/balance")
        assert other.status_code == 200, other.text
        assert other.json()["map_id"] == plain["id"]
        assert other.json()["monthly_api_credits_remaining_monetary_value"] == "10.00"
    stop(first)

    second_log = tmp_path / "second.log"
    second, base_url = serve(url, second_log, request.addfinalizer)
    output = second_log.read_text()
    assert TOKEN.findall(output) == []
    assert "staff@zoopay.local" not in output
    with httpx.Client(base_url=base_url, headers=bearer(token), timeout=30) as http:
        again = http.get(f"/users/{plain['id']}/payment/balance")
        assert again.status_code == 200, again.text
    stop(second)
    with sqlite3.connect(database) as db:
        staff = db.execute("SELECT email FROM users WHERE is_staff").fetchall()
    assert staff == [("staff@zoopay.local",)]
