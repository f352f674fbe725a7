"""Concurrent writers on one customer: no lost updates, on SQLite and on PostgreSQL.

The requests go through the ASGI app in one event loop; `all_finished` (an `asyncio.gather`
that lets every request finish) interleaves them at every database await, and each request's
unit of work runs on its own pooled connection, so the transactions really overlap (each test
checks that more than one connection was checked out at once). Writers serialize on the
customer's balance row (SELECT ... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite).

The ledger is the witness: for each customer and bucket, ordered by id, every entry's
balance_after must be the previous balance_after plus its delta. A lost update breaks that
chain (two entries computed from the same starting value).
"""

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from tests.support.concurrency import all_finished
from zoopay.accounts import service as accounts
from zoopay.db.engine import transaction
from zoopay.db.tables import ledger_entries, monthly_grants, org_members, subscriptions
from zoopay.ledger.service import (
    Bucket,
    Customer,
    Posting,
    Reason,
    get_balance,
    ledger_sums,
    lock_balance,
    post,
)
from zoopay.money import format_micros, to_micros

GRANTS = {"free": 10_000_000, "pro": 100_000_000, "team": 250_000_000, "enterprise": 1_000_000_000}


@dataclass(frozen=True)
class Entry:
    id: int
    bucket: str
    delta: int
    after: int
    reason: str
    actor: str


async def entries_of(engine: AsyncEngine, customer: Customer) -> list[Entry]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.customer_id == customer.id)
            .order_by(ledger_entries.c.id)
        )
        return [
            Entry(r.id, r.bucket, r.delta_micros, r.balance_after_micros, r.reason, r.actor)
            for r in rows
        ]


async def assert_chains_are_continuous(engine: AsyncEngine, customer: Customer) -> list[Entry]:
    """Each bucket's entries, in id order, chain from zero to the stored balance."""
    entries = await entries_of(engine, customer)
    async with engine.connect() as conn:
        balance = await get_balance(conn, customer=customer)
        sums = await ledger_sums(conn, customer=customer)
    for bucket in Bucket:
        running = 0
        for entry in (e for e in entries if e.bucket == bucket.value):
            assert entry.delta != 0, entry
            assert entry.after == running + entry.delta, (
                f"lost update on {customer} {bucket}: {entry} does not follow {running}"
            )
            running = entry.after
        assert balance.amount(bucket) == running == sums[bucket], bucket
    return entries


@dataclass
class PoolWatch:
    in_use: int = 0
    most: int = 0


@contextmanager
def watch_pool(engine: AsyncEngine) -> Iterator[PoolWatch]:
    """Counts the connections checked out at once, to show the transactions overlapped."""
    watch = PoolWatch()

    def checkout(*_args: Any) -> None:
        watch.in_use += 1
        watch.most = max(watch.most, watch.in_use)

    def checkin(*_args: Any) -> None:
        watch.in_use -= 1

    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        yield watch
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)


async def max_entry_id(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(select(func.coalesce(func.max(ledger_entries.c.id), 0)))
            ).scalar_one()
        )


@dataclass(frozen=True)
class Scene:
    staff: Person
    user: Person
    org_id: str

    @property
    def user_customer(self) -> Customer:
        return Customer("user", self.user.id)

    @property
    def org_customer(self) -> Customer:
        return Customer("org", self.org_id)


async def scene(client: httpx.AsyncClient, world: World) -> Scene:
    """A staff user, a user on free, and that user's org on team with an enterprise price."""
    staff = await world.user(staff=True)
    user = await world.user()
    org = await world.org(user)
    pricing = await client.put(
        f"/orgs/{org.id}/enterprise/pricing",
        json={"type": "per_user", "interval": "month", "price": "120.00"},
        headers=staff.headers,
    )
    assert pricing.status_code == 200, pricing.text
    team = await client.put(
        "/org/payment/subscriptions", json={"modeling_app": "team"}, headers=user.headers
    )
    assert team.status_code == 200, team.text
    return Scene(staff, user, org.id)


@dataclass(frozen=True)
class Put:
    path: str
    customer: Customer
    monthly: int | None
    stable: int | None


def staff_puts(scene: Scene, count: int, seed: int) -> list[Put]:
    """PUTs with targets no other write produces: odd micros, all different, never a grant."""
    rng = random.Random(seed)
    puts = []
    for i in range(count):
        for customer, path in (
            (scene.user_customer, f"/users/{scene.user.id}/payment/balance"),
            (scene.org_customer, f"/orgs/{scene.org_id}/payment/balance"),
        ):
            base = rng.randrange(0, 5_000) * 1_000_000 + 2 * i + 1
            shape = i % 3
            monthly = base if shape in (0, 2) else None
            stable = base + 1_000_000_000_000 if shape in (1, 2) else None
            puts.append(Put(path, customer, monthly, stable))
    return puts


async def do_put(client: httpx.AsyncClient, scene: Scene, put: Put) -> httpx.Response:
    body = {
        "monthly_api_credits_remaining_monetary_value": (
            format_micros(put.monthly) if put.monthly is not None else None
        ),
        "stable_api_credits_remaining_monetary_value": (
            format_micros(put.stable) if put.stable is not None else None
        ),
    }
    response = await client.put(put.path, json=body, headers=scene.staff.headers)
    assert response.status_code == 200, response.text
    got = response.json()
    if put.monthly is not None:
        assert got["monthly_api_credits_remaining_monetary_value"] == format_micros(put.monthly)
    if put.stable is not None:
        assert got["stable_api_credits_remaining_monetary_value"] == format_micros(put.stable)
    return response


async def test_concurrent_puts_plan_changes_and_reads_lose_no_update(
    client: httpx.AsyncClient, world: World, clock: Clock, engine: AsyncEngine
) -> None:
    s = await scene(client, world)
    # Off-grant values before the period ends, so that the refresh writes an entry.
    await do_put(
        client, s, Put(f"/users/{s.user.id}/payment/balance", s.user_customer, 3_000_002, 5)
    )
    await do_put(client, s, Put(f"/orgs/{s.org_id}/payment/balance", s.org_customer, 7_000_004, 9))
    clock.advance(days=32)  # past both anchors' first monthly boundary
    watermark = await max_entry_id(engine)

    puts = staff_puts(s, count=8, seed=1)
    user_tiers = ["pro", "free"] * 3
    org_tiers = ["enterprise", "team"] * 3
    calls: list[Awaitable[httpx.Response]] = [do_put(client, s, put) for put in puts]
    calls += [
        client.put("/user/payment/subscriptions", json={"modeling_app": t}, headers=s.user.headers)
        for t in user_tiers
    ]
    calls += [
        client.put("/org/payment/subscriptions", json={"modeling_app": t}, headers=s.user.headers)
        for t in org_tiers
    ]
    reads = [client.get("/user/payment/balance", headers=s.user.headers) for _ in range(4)] + [
        client.get("/org/payment/balance", headers=s.user.headers) for _ in range(4)
    ]
    random.Random(7).shuffle(calls)
    with watch_pool(engine) as pool:
        responses = await all_finished(*calls, *reads)
    assert pool.most > 1
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    read_responses = responses[len(calls) :]

    for customer, grant_before, up, down in (
        (s.user_customer, GRANTS["free"], GRANTS["pro"], GRANTS["free"]),
        (s.org_customer, GRANTS["team"], GRANTS["enterprise"], GRANTS["team"]),
    ):
        entries = await assert_chains_are_continuous(engine, customer)
        before = [e for e in entries if e.id <= watermark]
        during = [e for e in entries if e.id > watermark]
        # Whoever came first refreshed the period, once, before any other change.
        assert during[0].reason == "refresh"
        assert (during[0].bucket, during[0].after) == ("monthly", grant_before)
        assert [e.reason for e in during].count("refresh") == 1
        # Every PUT wrote exactly its own targets: none was lost or applied twice.
        mine = [p for p in puts if p.customer == customer]
        for bucket in ("monthly", "stable"):
            written = Counter(
                e.after for e in during if e.reason == "staff_change" and e.bucket == bucket
            )
            sent = Counter(getattr(p, bucket) for p in mine if getattr(p, bucket) is not None)
            assert written == sent, bucket
        # A plan change moves towards the new grant: up to at most a higher one, by at most
        # what it grants beyond the period's refresh in all; down to a lower one.
        for e in during:
            if e.reason == "plan_change":
                assert e.bucket == "monthly"
                assert (e.delta > 0 and e.after <= up) or (e.delta < 0 and e.after == down), e
        topped_up = sum(e.delta for e in during if e.reason == "plan_change" and e.delta > 0)
        assert topped_up <= up - grant_before
        assert {e.reason for e in during} <= {"refresh", "staff_change", "plan_change"}
        # Only staff write stable: it holds the target of the PUT that committed last.
        last_stable = [e for e in during if e.bucket == "stable"][-1]
        assert last_stable.reason == "staff_change"
        async with engine.connect() as conn:
            final = await get_balance(conn, customer=customer)
        assert final.stable_micros == last_stable.after
        assert final.monthly_micros == [e for e in during if e.bucket == "monthly"][-1].after
        # Reads saw committed states only, and only states after the refresh.
        monthly_states = {e.after for e in during if e.bucket == "monthly"}
        stable_states = {e.after for e in during if e.bucket == "stable"}
        stable_states.add(next(e.after for e in reversed(before) if e.bucket == "stable"))
        for read in read_responses:
            body = read.json()
            if body["map_id"] != customer.id:
                continue
            monthly = to_micros_text(body["monthly_api_credits_remaining_monetary_value"])
            stable = to_micros_text(body["stable_api_credits_remaining_monetary_value"])
            assert monthly in monthly_states
            assert stable in stable_states
            assert body["monthly_api_credits_remaining"] == monthly // 500_000
            assert body["total_due"] == "0.00"
    await assert_subscriptions_are_consistent(engine, s)


def to_micros_text(text: str) -> int:
    return to_micros(Decimal(text))


async def assert_subscriptions_are_consistent(engine: AsyncEngine, s: Scene) -> None:
    """One subscription per customer, on a tier of the right kind, anchored where it began."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(subscriptions).where(
                        subscriptions.c.customer_id.in_([s.user.id, s.org_id])
                    )
                )
            )
            .mappings()
            .all()
        )
    tiers = {row["customer_id"]: row["tier"] for row in rows}
    assert len(rows) == 2
    assert tiers[s.user.id] in ("free", "pro")
    assert tiers[s.org_id] in ("team", "enterprise")
    for row in rows:
        assert row["period_start"] > row["anchor_at"]


async def test_concurrent_reads_after_a_boundary_refresh_once(
    client: httpx.AsyncClient, world: World, clock: Clock, engine: AsyncEngine
) -> None:
    s = await scene(client, world)
    await do_put(client, s, Put(f"/orgs/{s.org_id}/payment/balance", s.org_customer, 1, None))
    await do_put(client, s, Put(f"/users/{s.user.id}/payment/balance", s.user_customer, 1, None))
    clock.advance(days=31)
    reads = [client.get("/org/payment/balance", headers=s.user.headers) for _ in range(16)]
    reads += [client.get("/user/payment/balance", headers=s.user.headers) for _ in range(16)]
    with watch_pool(engine) as pool:
        responses = await all_finished(*reads)
    assert pool.most > 1
    assert [r.status_code for r in responses] == [200] * 32
    values = Counter(r.json()["monthly_api_credits_remaining_monetary_value"] for r in responses)
    assert values == {"250.00": 16, "10.00": 16}
    for customer, grant in ((s.org_customer, GRANTS["team"]), (s.user_customer, GRANTS["free"])):
        entries = await assert_chains_are_continuous(engine, customer)
        refreshes = [e for e in entries if e.reason == "refresh"]
        assert [(e.bucket, e.delta, e.after) for e in refreshes] == [("monthly", grant - 1, grant)]


async def granted_in_period(engine: AsyncEngine, customer: Customer) -> tuple[int, int, int]:
    """What the ledger shows entering the monthly bucket by grants (all in one period here),
    and the period's record of what it granted and the largest grant held."""
    async with engine.connect() as conn:
        entered = await conn.execute(
            select(func.coalesce(func.sum(ledger_entries.c.delta_micros), 0)).where(
                ledger_entries.c.customer_id == customer.id,
                ledger_entries.c.bucket == "monthly",
                ledger_entries.c.reason.in_(["grant", "plan_change", "refresh"]),
                ledger_entries.c.delta_micros > 0,
            )
        )
        [record] = (
            await conn.execute(
                select(
                    monthly_grants.c.granted_micros, monthly_grants.c.largest_grant_micros
                ).where(monthly_grants.c.customer_id == customer.id)
            )
        ).all()
    return int(entered.scalar_one()), record[0], record[1]


async def test_concurrent_plan_flips_after_spending_grant_one_largest_grant(
    client: httpx.AsyncClient, world: World, clock: Clock, engine: AsyncEngine
) -> None:
    """Spent buckets, then many upgrades and downgrades at once, with calls drawing from the
    org meanwhile: the period grants each customer its largest plan's grant, once."""
    s = await scene(client, world)
    async with transaction(engine) as conn:
        service = await accounts.create_service_token(conn, service_name="product", now=clock.now)
    await do_put(client, s, Put(f"/users/{s.user.id}/payment/balance", s.user_customer, 0, None))
    await do_put(client, s, Put(f"/orgs/{s.org_id}/payment/balance", s.org_customer, 0, None))
    flips: list[Awaitable[httpx.Response]] = [
        client.put("/user/payment/subscriptions", json={"modeling_app": t}, headers=s.user.headers)
        for t in ["pro", "free"] * 8
    ]
    flips += [
        client.put("/org/payment/subscriptions", json={"modeling_app": t}, headers=s.user.headers)
        for t in ["enterprise", "team"] * 8
    ]
    random.Random(11).shuffle(flips)
    calls = [
        client.post(
            "/api-calls",
            json={
                "id": str(uuid.uuid4()),
                "user_id": s.user.id,
                "endpoint": "/file/conversion",
                "method": "POST",
                "started_at": clock.now.isoformat(),
                "completed_at": clock.now.isoformat(),
                "price": "7.00",
            },
            headers={"Authorization": f"Bearer {service}"},
        )
        for _ in range(8)
    ]
    with watch_pool(engine) as pool:
        responses = await all_finished(*flips, *calls)
    assert pool.most > 1
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: len(flips), 201: len(calls)}, [r.text for r in responses]
    for customer, largest in ((s.user_customer, GRANTS["pro"]), (s.org_customer, 1_000_000_000)):
        await assert_chains_are_continuous(engine, customer)
        assert await granted_in_period(engine, customer) == (largest, largest, largest)
    async with engine.connect() as conn:
        user = await get_balance(conn, customer=s.user_customer)
        org = await get_balance(conn, customer=s.org_customer)
    assert user.monthly_micros <= GRANTS["pro"] - GRANTS["free"]
    # The org's calls drew 56.00 from at most the 750.00 enterprise added, or became due.
    assert org.monthly_micros + 56_000_000 - org.total_due_micros <= 750_000_000


async def bump(engine: AsyncEngine, customer: Customer, bucket: Bucket, clock: Clock) -> None:
    """One unit of work: lock the balance, yield to the other writers, add one micro-dollar."""
    async with transaction(engine) as conn:
        balance = await lock_balance(conn, customer=customer)
        await asyncio.sleep(0)
        posting = Posting(Reason.STAFF_CHANGE, "concurrency-test")
        await post(conn, balance=balance, deltas={bucket: 1}, posting=posting, now=clock.now)


async def test_fifty_concurrent_increments_all_land(
    client: httpx.AsyncClient, world: World, clock: Clock, engine: AsyncEngine
) -> None:
    s = await scene(client, world)
    async with engine.connect() as conn:
        user_before = await get_balance(conn, customer=s.user_customer)
        org_before = await get_balance(conn, customer=s.org_customer)
    bumps = [bump(engine, s.org_customer, Bucket.STABLE, clock) for _ in range(50)]
    bumps += [bump(engine, s.user_customer, Bucket.MONTHLY, clock) for _ in range(50)]
    random.Random(3).shuffle(bumps)
    with watch_pool(engine) as pool:
        await all_finished(*bumps)
    assert pool.most > 1
    async with engine.connect() as conn:
        user_after = await get_balance(conn, customer=s.user_customer)
        org_after = await get_balance(conn, customer=s.org_customer)
    assert org_after.stable_micros == org_before.stable_micros + 50
    assert org_after.monthly_micros == org_before.monthly_micros
    assert user_after.monthly_micros == user_before.monthly_micros + 50
    assert user_after.stable_micros == user_before.stable_micros
    for customer, bucket in ((s.org_customer, "stable"), (s.user_customer, "monthly")):
        entries = await assert_chains_are_continuous(engine, customer)
        bumped = [e for e in entries if e.actor == "concurrency-test"]
        assert len(bumped) == 50
        assert all((e.bucket, e.delta) == (bucket, 1) for e in bumped)
        # Fifty different starting values: each increment saw the one before it.
        assert len({e.after for e in bumped}) == 50


@pytest.mark.parametrize("who", ["user", "org"])
async def test_concurrent_creates_make_one_subscription(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, who: str
) -> None:
    """POST (create only) from many clients at once: one wins, the rest see it and get 409."""
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    await client.put(
        f"/orgs/{org.id}/enterprise/pricing",
        json={"type": "flat", "interval": "month", "price": "9000"},
        headers=staff.headers,
    )
    tier, customer = (
        ("pro", Customer("user", admin.id))
        if who == "user"
        else (
            "enterprise",
            Customer("org", org.id),
        )
    )
    path = f"/{who}/payment/subscriptions"
    posts = [
        client.post(path, json={"modeling_app": tier}, headers=admin.headers) for _ in range(16)
    ]
    with watch_pool(engine) as pool:
        responses = await all_finished(*posts)
    assert pool.most > 1
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: 15}, [r.text for r in responses]
    assert all(r.json()["error_code"] == "conflict" for r in responses if r.status_code == 409)
    entries = await assert_chains_are_continuous(engine, customer)
    assert [(e.reason, e.after) for e in entries if e.reason == "plan_change"] == [
        ("plan_change", GRANTS[tier])
    ]
    async with engine.connect() as conn:
        count = select(func.count()).select_from(subscriptions)
        rows = await conn.execute(count.where(subscriptions.c.customer_id == customer.id))
        assert rows.scalar_one() == 1


async def test_concurrent_enterprise_pricing_puts_on_a_new_org(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """The first price of an org, set by many staff requests at once: one row, the last wins."""
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    prices = [f"{100 + i}.00" for i in range(16)]
    puts = [
        client.put(
            f"/orgs/{org.id}/enterprise/pricing",
            json={"type": "flat", "interval": "month", "price": price},
            headers=staff.headers,
        )
        for price in prices
    ]
    with watch_pool(engine) as pool:
        responses = await all_finished(*puts)
    assert pool.most > 1
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    balance = await client.get("/org/payment/balance", headers=admin.headers)
    assert balance.json()["modeling_app_enterprise_price"]["price"] in prices


# Two requests need not overlap on a loaded machine: a race that did not happen is run again.
RING_ROUNDS = 5


@pytest.mark.parametrize("admins", [2, 8])
async def test_admins_removing_each_other_at_once_leave_one(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, admins: int
) -> None:
    """A ring of admins, each removing the next at the same moment: the org keeps an admin.

    Each removal alone is fine (another admin remains), so only serializing them per org
    prevents the write skew that removes them all. A removal is refused with 409 if it would
    remove the last admin, or with 404 if its caller had already been removed by then. Each
    round is a new org, its outcome checked, until one where the removals overlapped.
    """
    for _ in range(RING_ROUNDS):
        if await removal_ring(client, world, engine, admins) > 1:
            return
    pytest.fail(f"the removals never overlapped in {RING_ROUNDS} rounds")


async def removal_ring(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, admins: int
) -> int:
    """One ring of `admins` removing each other at once, its outcome checked: the most
    connections that were in use at the same time."""
    people = [await world.user() for _ in range(admins)]
    org = await world.org(people[0])
    for person in people[1:]:
        invited = await client.post(
            "/org/members", json={"email": person.email, "role": "admin"}, headers=people[0].headers
        )
        path = f"/user/org-invitations/{invited.json()['id']}/accept"
        accepted = await client.post(path, headers=person.headers)
        assert accepted.status_code == 200, accepted.text
    removals = [
        client.delete(f"/org/members/{people[(i + 1) % admins].id}", headers=person.headers)
        for i, person in enumerate(people)
    ]
    with watch_pool(engine) as pool:
        responses = await all_finished(*removals)
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {204, 404, 409}, [r.text for r in responses]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(org_members.c.user_id, org_members.c.role).where(
                    org_members.c.org_id == org.id
                )
            )
        ).all()
    assert rows, "every admin was removed: the org has no admin and no member left"
    assert {r.role for r in rows} == {"admin"}
    assert codes[204] == admins - len(rows)
    removed = {people[(i + 1) % admins].id for i, r in enumerate(responses) if r.status_code == 204}
    assert {r.user_id for r in rows} == {p.id for p in people} - removed
    return pool.most
