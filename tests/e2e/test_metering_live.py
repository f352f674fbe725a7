"""Metering end to end, on real `zoopay serve` processes sharing the run's database: two
servers under 4,000 calls of one org from 64 clients (10% sent twice), a monthly boundary
crossed while calls stream in, a server SIGKILLed mid-load and restarted, the listings
through kittycad 1.2.0, and bad reports refused without a trace.

The money is checked to the micro-dollar against what the calls must have drawn (explicit
prices, drawn monthly -> stable -> total_due), and in the database: every call recorded once,
one set of ledger entries per call, continuous ledger chains, ledger sums equal to balances.
"""

import asyncio
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from kittycad.models.api_call_with_price import ApiCallWithPrice as SdkApiCall
from kittycad.models.created_at_sort_mode import CreatedAtSortMode
from kittycad.models.user_identifier import UserIdentifier
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import ZOOPAY, Account, LiveServer, People, Zoopay
from tests.e2e.metering_support import (
    HTTP_TIMEOUT,
    JSON,
    Call,
    ServerProcess,
    assert_calls_debited_once,
    assert_chains,
    assert_money_invariants,
    assert_reported,
    balance_rows,
    batch_body,
    bearer,
    buckets_over_http,
    count,
    dollars,
    drain,
    ledger,
    make_org,
    micros,
    recorded_calls,
    report,
    service_token,
    set_buckets,
)
from tests.support.cli import zoopay_env
from tests.support.concurrency import all_finished
from zoopay.db.engine import transaction
from zoopay.db.tables import api_calls, ledger_entries, subscriptions
from zoopay.subscriptions.periods import add_months, period_start


@pytest.fixture(scope="module")
def second_server(
    server: LiveServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A second `zoopay serve` on the same database as the session's `server`."""
    process = ServerProcess(database_url, tmp_path_factory.mktemp("second") / "serve.log")
    try:
        process.start()
        yield process.live
    finally:
        process.stop()


@pytest.fixture
def own_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of the test's own, which it may kill and restart; stopped at the end."""
    process = ServerProcess(database_url, tmp_path_factory.mktemp("own") / "serve.log")
    try:
        yield process
    finally:
        process.stop()


ENDPOINTS = ["/file/conversion", "/modeling/cmd", "/ml/text-to-cad", "/user/session"]
TEAM_GRANT = 250_000_000
LOAD_LIMIT_SECONDS = 240


async def bounded(work: Awaitable[Any], what: str, seconds: float = LOAD_LIMIT_SECONDS) -> Any:
    try:
        return await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {seconds}s") from None


def random_calls(
    rng: random.Random, users: list[Account], count: int, max_price: int, org_id: str | None
) -> list[Call]:
    """Calls spread over the users, with explicit prices of 1 to `max_price` micro-dollars;
    every third names the org explicitly, the others leave it to the user's membership. They
    start from now on: an org pays only for calls that started once the user was its member."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    return [
        Call(
            user_id=users[i % len(users)].id,
            started_at=start + timedelta(milliseconds=7 * i),
            duration=timedelta(milliseconds=rng.randrange(0, 200_000)),
            price_micros=rng.randint(1, max_price),
            endpoint=rng.choice(ENDPOINTS),
            org_id=org_id if org_id is not None and i % 3 == 0 else None,
        )
        for i in range(count)
    ]


# --- 1. two servers, 4,000 calls of one org, 64 clients, 10% sent twice ---------------------

CALLS = 4000
CLIENTS = 64
MONTHLY = 12_345_678
STABLE = 9_876_543


@dataclass(frozen=True)
class Send:
    call: Call
    other_spelling: bool


def plan_sends(rng: random.Random, calls: list[Call]) -> tuple[list[list[Send]], set[str]]:
    """Each call on one of two servers, in random order; a tenth of them once more, half of
    those right beside the first send (on the same server or the other, so both are in flight
    together), half later; half the repeats spell the same content differently."""
    keyed: list[list[tuple[float, Send]]] = [[], []]
    order = rng.sample(range(len(calls)), len(calls))
    for position, index in enumerate(order):
        keyed[rng.randrange(2)].append((position, Send(calls[index], False)))
    repeated = rng.sample(order, len(calls) // 10)
    position_of = {index: position for position, index in enumerate(order)}
    for n, index in enumerate(repeated):
        position = position_of[index]
        key = position + 0.5 if n % 2 == 0 else rng.uniform(position, len(calls))
        keyed[rng.randrange(2)].append((key, Send(calls[index], n % 4 < 2)))
    sends = [[send for _, send in sorted(side, key=lambda pair: pair[0])] for side in keyed]
    return sends, {calls[index].id for index in repeated}


async def run_clients(
    base_urls: list[str], tokens: list[str], sends: list[list[Send]], clients: int
) -> tuple[dict[str, list[tuple[int, dict[str, Any]]]], set[str]]:
    """`clients` clients, half on each server, each taking the next send of its server. A send
    whose connection closed before its answer (a kept-alive connection the server closed: seen
    once in CI under load) is sent again, as a product would, and its id is in `retried`."""
    responses: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    queues = [deque(side) for side in sends]

    async def client(side: int) -> None:
        async with httpx.AsyncClient(base_url=base_urls[side], timeout=HTTP_TIMEOUT) as http:
            while queues[side]:
                send = queues[side].popleft()
                spelling = send.other_spelling
                try:
                    outcome = await report(http, send.call, tokens[side], other_spelling=spelling)
                except httpx.TransportError:
                    retried.add(send.call.id)
                    outcome = await report(http, send.call, tokens[side], other_spelling=spelling)
                responses.setdefault(send.call.id, []).append(outcome)

    retried: set[str] = set()
    await bounded(all_finished(*(client(n % 2) for n in range(clients))), f"{clients} clients")
    return responses, retried


async def test_two_servers_record_4000_calls_of_one_org_exactly_once(
    people: People,
    zoopay: Zoopay,
    server: LiveServer,
    second_server: LiveServer,
    engine: AsyncEngine,
) -> None:
    staff = people.user(staff=True)
    users = people.users(5)
    admin, members = users[0], users[1:]
    org_id = make_org(server.base_url, admin, *members, tier="team")
    balance_path = f"/orgs/{org_id}/payment/balance"
    set_buckets(server.base_url, staff, balance_path, dollars(MONTHLY), dollars(STABLE))
    tokens = [service_token(zoopay, "product-a"), service_token(zoopay, "product-b")]
    rng = random.Random(3)
    calls = random_calls(rng, users, CALLS, 20_000, org_id)
    spent = sum(call.price_micros for call in calls)
    assert spent > MONTHLY + STABLE  # the calls cross into stable and into total_due
    sends, repeated = plan_sends(rng, calls)

    urls = [server.base_url, second_server.base_url]
    responses, retried = await run_clients(urls, tokens, sends, CLIENTS)

    emails = {user.id: user.email for user in users}
    assert set(responses) == {call.id for call in calls}
    for call in calls:
        outcomes = responses[call.id]
        statuses = sorted(status for status, _ in outcomes)
        expected = [200, 201] if call.id in repeated else [201]
        if call.id in retried:
            # The lost send may have been recorded: then the retry is answered as a repeat.
            assert len(statuses) == len(expected) and set(statuses) <= {200, 201}, outcomes
            assert statuses.count(201) <= 1, outcomes
        else:
            assert statuses == expected, outcomes
        original = next((body for status, body in outcomes if status == 201), outcomes[0][1])
        assert_reported(original, call, org_id=org_id, email=emails[call.user_id])
        assert all(body == original for _, body in outcomes), outcomes
    expected = drain(MONTHLY, STABLE, spent)
    assert expected["monthly"] == 0 and expected["stable"] == 0 and expected["total_due"] > 0
    for base_url in (server.base_url, second_server.base_url):
        assert buckets_over_http(base_url, staff, balance_path) == expected

    recorded = await recorded_calls(engine, org_id)
    assert set(recorded) == {call.id for call in calls}
    assert await count(engine, api_calls) == CALLS
    for call in calls:
        row = recorded[call.id]
        assert (row["price_micros"], row["user_id"], row["org_id"]) == (
            call.price_micros,
            call.user_id,
            org_id,
        )
    entries = await ledger(engine, org_id)
    assert_calls_debited_once(recorded, entries)
    assert sum(entry["reason"] == "api_call" for entry in entries) >= CALLS
    assert assert_chains(entries)[org_id] == expected
    held = await assert_money_invariants(engine)
    assert held[org_id] == expected


# --- 2. a monthly boundary crossed while calls stream in ------------------------------------

BOUNDARY_IN_SECONDS = 2.5
STREAM_AFTER_SECONDS = 2.5
STREAM_CLIENTS = 32


def boundary_soon(seconds: float) -> tuple[datetime, datetime, datetime]:
    """A boundary `seconds` from now, an anchor whose monthly periods turn at it, and the
    start of the period before it."""
    boundary = datetime.now(UTC) + timedelta(seconds=seconds)
    for months in (1, 12):  # a month back can clamp the day (Mar 31 -> Feb 28); a year cannot
        anchor = add_months(boundary, -months)
        if add_months(anchor, months) == boundary:
            return boundary, anchor, period_start(anchor, boundary - timedelta(microseconds=1))
    raise AssertionError(f"no anchor turns a period at {boundary}")


@dataclass
class Stream:
    """What a stream of calls across the boundary sent, and what came back."""

    calls: dict[str, Call]
    statuses: list[int]
    reads: list[int]


async def stream_calls(
    base_urls: list[str],
    tokens: list[str],
    reader: Account,
    users: list[Account],
    until: float,
) -> Stream:
    rng = random.Random(7)
    stream = Stream({}, [], [])

    def new_call() -> Call:
        call = Call(
            user_id=rng.choice(users).id,
            # Not truncated to the second: that could put it before the members joined.
            started_at=datetime.now(UTC),
            duration=timedelta(milliseconds=rng.randrange(0, 5000)),
            price_micros=rng.randint(1, 5000),
            endpoint=rng.choice(ENDPOINTS),
        )
        stream.calls[call.id] = call
        return call

    async def single(side: int) -> None:
        async with httpx.AsyncClient(base_url=base_urls[side], timeout=HTTP_TIMEOUT) as http:
            while asyncio.get_running_loop().time() < until:
                status, _ = await report(http, new_call(), tokens[side])
                stream.statuses.append(status)

    async def batches(side: int) -> None:
        async with httpx.AsyncClient(base_url=base_urls[side], timeout=HTTP_TIMEOUT) as http:
            while asyncio.get_running_loop().time() < until:
                content = batch_body([new_call() for _ in range(10)])
                response = await http.post(
                    "/api-calls/batch", content=content, headers={**JSON, **bearer(tokens[side])}
                )
                stream.statuses.append(response.status_code)
                stream.statuses.extend(result["status"] for result in response.json()["results"])

    async def reads(side: int) -> None:
        async with httpx.AsyncClient(base_url=base_urls[side], timeout=HTTP_TIMEOUT) as http:
            while asyncio.get_running_loop().time() < until:
                balance = await http.get("/org/payment/balance", headers=reader.headers)
                authorized = await http.post(
                    "/api-calls/authorize",
                    json={"user_id": reader.id, "endpoint": "/file/conversion"},
                    headers=bearer(tokens[side]),
                )
                assert authorized.json()["allowed"] is True, authorized.text
                stream.reads.extend([balance.status_code, authorized.status_code])
                await asyncio.sleep(0.05)

    workers = [single(n % 2) for n in range(STREAM_CLIENTS)]
    workers += [batches(0), batches(1), reads(0), reads(1)]
    await bounded(all_finished(*workers), "the stream of calls")
    return stream


async def refresh_by_command(database_url: str, at: datetime) -> dict[str, Any]:
    """`zoopay billing refresh` run just after the boundary, racing the lazy refreshes."""
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
    process = await asyncio.create_subprocess_exec(
        str(ZOOPAY),
        "billing",
        "refresh",
        env=zoopay_env(database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await bounded(process.communicate(), "zoopay billing refresh", 120)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_a_period_boundary_crossed_under_load_refreshes_exactly_once(
    people: People,
    zoopay: Zoopay,
    server: LiveServer,
    second_server: LiveServer,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    staff = people.user(staff=True)
    users = people.users(4)
    org_id = make_org(server.base_url, users[0], *users[1:], tier="team")
    balance_path = f"/orgs/{org_id}/payment/balance"
    monthly, stable = 500_000, 1_000_001
    set_buckets(server.base_url, staff, balance_path, dollars(monthly), dollars(stable))
    tokens = [service_token(zoopay, "product-a"), service_token(zoopay, "product-b")]
    boundary, anchor, last_start = boundary_soon(BOUNDARY_IN_SECONDS)
    async with transaction(engine) as conn:
        await conn.execute(
            update(subscriptions)
            .where(subscriptions.c.customer_id == org_id)
            .values(anchor_at=anchor, period_start=last_start)
        )
    until = asyncio.get_running_loop().time() + BOUNDARY_IN_SECONDS + STREAM_AFTER_SECONDS

    stream, command = await asyncio.gather(
        stream_calls([server.base_url, second_server.base_url], tokens, users[1], users, until),
        refresh_by_command(database_url, boundary + timedelta(milliseconds=50)),
    )

    assert set(stream.statuses) <= {200, 201} and stream.statuses.count(201) == len(stream.calls)
    assert set(stream.reads) == {200}
    assert command["refreshed"] in (0, 1)
    recorded = await recorded_calls(engine, org_id)
    assert set(recorded) == set(stream.calls)
    before = [row for row in recorded.values() if row["created_at"] < boundary]
    after = [row for row in recorded.values() if row["created_at"] >= boundary]
    assert before and after, f"{len(before)} calls before the boundary and {len(after)} after"

    entries = await ledger(engine, org_id)
    [refresh] = [entry for entry in entries if entry["reason"] == "refresh"]
    assert refresh["bucket"] == "monthly" and refresh["created_at"] >= boundary
    assert refresh["balance_after_micros"] == TEAM_GRANT
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(subscriptions).where(subscriptions.c.customer_id == org_id)))
            .mappings()
            .one()
        )
    assert (row["id"], row["period_start"]) == (refresh["reference"], boundary)

    debited_after = {
        entry["reference"]
        for entry in entries
        if entry["reason"] == "api_call" and entry["id"] > refresh["id"]
    }
    assert {row["id"] for row in after} <= debited_after  # no call of the new period missed it
    spent_before = sum(c.price_micros for i, c in stream.calls.items() if i not in debited_after)
    spent_after = sum(stream.calls[i].price_micros for i in debited_after)
    assert spent_after < TEAM_GRANT
    old_period = drain(monthly, stable, spent_before)
    assert refresh["delta_micros"] == TEAM_GRANT - old_period["monthly"]
    expected = {
        "monthly": TEAM_GRANT - spent_after,
        "stable": old_period["stable"],
        "total_due": old_period["total_due"],
    }
    assert buckets_over_http(second_server.base_url, staff, balance_path) == expected
    assert_calls_debited_once(recorded, entries)
    assert assert_chains(entries)[org_id] == expected
    assert (await assert_money_invariants(engine))[org_id] == expected
    async with engine.connect() as conn:
        refreshes = (
            await conn.execute(select(ledger_entries).where(ledger_entries.c.reason == "refresh"))
        ).all()
    assert len(refreshes) == 1


# --- 3. SIGKILL a server mid-load, restart it ------------------------------------------------

KILL_CALLS_SINGLE = 1500
KILL_BATCHES = 30
KILL_BATCH_SIZE = 30
KILL_AFTER_ACKNOWLEDGED = 300


@dataclass
class Load:
    """What a load against one server got back: acknowledged calls (2xx, with the body of a
    single report or the result of a batch), and calls whose request failed: cut off by the
    kill, or sent after it (each client goes on until its connection fails)."""

    acknowledged: dict[str, dict[str, Any]]
    lost: set[str]
    unexpected: list[str]


async def load_until_killed(
    base_url: str,
    token: str,
    singles: list[Call],
    batches: list[list[Call]],
    kill: Callable[[], None],
) -> Load:
    load = Load({}, set(), [])
    single_queue, batch_queue = deque(singles), deque(batches)

    async def post_singles() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
            while single_queue:
                call = single_queue.popleft()
                try:
                    status, body = await report(http, call, token)
                except httpx.TransportError:
                    load.lost.add(call.id)
                    return
                if status == 201:
                    load.acknowledged[call.id] = body
                else:
                    load.unexpected.append(f"{status} {body}")

    async def post_batches() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
            while batch_queue:
                calls = batch_queue.popleft()
                try:
                    response = await http.post(
                        "/api-calls/batch",
                        content=batch_body(calls),
                        headers={**JSON, **bearer(token)},
                    )
                except httpx.TransportError:
                    load.lost.update(call.id for call in calls)
                    return
                if response.status_code != 200:
                    load.unexpected.append(response.text)
                    continue
                for call, result in zip(calls, response.json()["results"], strict=True):
                    if result["status"] == 201:
                        assert result["id"] == call.id
                        assert micros(result["price"]) == call.price_micros
                        load.acknowledged[call.id] = result
                    else:
                        load.unexpected.append(str(result))

    async def killer() -> None:
        while len(load.acknowledged) < KILL_AFTER_ACKNOWLEDGED:
            assert single_queue or batch_queue, "the load ended before the kill"
            await asyncio.sleep(0.005)
        kill()

    workers = [post_singles() for _ in range(16)] + [post_batches() for _ in range(3)]
    await bounded(all_finished(killer(), *workers), "the load and the kill")
    return load


async def resend_all(
    base_url: str, token: str, singles: list[Call], batches: list[list[Call]]
) -> dict[str, tuple[int, dict[str, Any]]]:
    outcomes: dict[str, tuple[int, dict[str, Any]]] = {}
    single_queue, batch_queue = deque(singles), deque(batches)

    async def post_singles() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
            while single_queue:
                call = single_queue.popleft()
                outcomes[call.id] = await report(http, call, token)

    async def post_batches() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
            while batch_queue:
                calls = batch_queue.popleft()
                response = await http.post(
                    "/api-calls/batch", content=batch_body(calls), headers={**JSON, **bearer(token)}
                )
                assert response.status_code == 200, response.text
                for call, result in zip(calls, response.json()["results"], strict=True):
                    assert result["id"] == call.id and result["error"] is None, result
                    outcomes[call.id] = (result["status"], result)

    workers = [post_singles() for _ in range(16)] + [post_batches() for _ in range(2)]
    await bounded(all_finished(*workers), "re-sending every call")
    return outcomes


async def test_a_server_killed_mid_load_keeps_every_acknowledged_call_once(
    people: People, zoopay: Zoopay, own_server: ServerProcess, engine: AsyncEngine
) -> None:
    staff = people.user(staff=True)  # before the start, so that it bootstraps no one
    users = people.users(5)
    own_server.start()
    base_url = own_server.base_url
    org_id = make_org(base_url, users[0], users[1], users[2], tier="team")
    set_buckets(base_url, staff, f"/orgs/{org_id}/payment/balance", "2.00", "1.50")
    set_buckets(base_url, staff, f"/users/{users[3].id}/payment/balance", "0.75", "0.25")
    token = service_token(zoopay, "product")
    rng = random.Random(11)
    calls = random_calls(
        rng, users, KILL_CALLS_SINGLE + KILL_BATCHES * KILL_BATCH_SIZE, 50_000, org_id=None
    )
    singles = calls[:KILL_CALLS_SINGLE]
    rest = calls[KILL_CALLS_SINGLE:]
    batches = [rest[i : i + KILL_BATCH_SIZE] for i in range(0, len(rest), KILL_BATCH_SIZE)]

    load = await load_until_killed(base_url, token, singles, batches, own_server.kill)
    own_server.start()

    assert not load.unexpected, load.unexpected[:5]
    assert load.lost, "the kill cut off no request"
    by_id = {call.id: call for call in calls}
    landed = await recorded_calls(engine)
    assert set(load.acknowledged) <= set(landed), "an acknowledged call was lost"
    assert set(landed) <= set(load.acknowledged) | load.lost, "a call landed that was not sent"
    for call_id, row in landed.items():
        assert row["price_micros"] == by_id[call_id].price_micros
    held = await assert_money_invariants(engine)

    outcomes = await resend_all(base_url, token, singles, batches)

    assert set(outcomes) == set(by_id)
    for call_id, (status, body) in outcomes.items():
        assert status == (200 if call_id in landed else 201), (call_id, status, body)
        original = load.acknowledged.get(call_id)
        if original is not None and "created_at" in original:  # a single report's 201
            assert body == original
        elif original is not None:  # a batch's result: the same id and price
            assert (body["id"], body["price"]) == (original["id"], original["price"])
    new_spend: dict[str, int] = {}
    for call_id in set(by_id) - set(landed):
        customer = org_id if by_id[call_id].user_id in {u.id for u in users[:3]} else None
        customer = customer or by_id[call_id].user_id
        new_spend[customer] = new_spend.get(customer, 0) + by_id[call_id].price_micros
    assert new_spend, "every call had landed before the kill"
    after = await assert_money_invariants(engine)
    assert set(await recorded_calls(engine)) == set(by_id)
    for customer_id, buckets in held.items():
        moved = drain(buckets["monthly"], buckets["stable"], new_spend.get(customer_id, 0))
        moved["total_due"] += buckets["total_due"]
        assert after[customer_id] == moved, customer_id


# --- 4. the listings through kittycad 1.2.0 ---------------------------------------------------


def sdk_ids(items: Any) -> list[str]:
    return [str(item.id) for item in items]


def assert_sdk_call(item: SdkApiCall, call: Call, org_id: str | None, email: str) -> None:
    """The SDK's model of a listed call says what was reported, price as a float."""
    assert str(item.id) == call.id
    assert str(item.user_id) == call.user_id
    assert (str(item.org_id) if item.org_id else None) == org_id
    assert item.email == email
    assert item.price == float(dollars(call.price_micros))
    assert item.minutes == call.minutes
    assert item.duration == call.duration // timedelta(milliseconds=1)
    assert item.started_at == call.started_at
    assert item.completed_at == call.started_at + call.duration
    assert (item.endpoint, str(item.method), item.status_code) == (call.endpoint, "POST", 200)
    assert (item.ip_address, item.user_agent) == ("10.1.2.3", "metering-e2e")


def test_listings_through_kittycad(people: People, zoopay: Zoopay, server: LiveServer) -> None:
    staff = people.user(staff=True)
    admin, alice, bob, outsider = people.users(4)
    org_id = make_org(server.base_url, admin, alice, bob)
    token = service_token(zoopay, "product")
    # After the members joined (the org lists only calls started while they were members).
    start = datetime.now(UTC).replace(microsecond=250_000) + timedelta(seconds=1)
    authors = [alice, bob, alice, alice, outsider, alice, bob, alice, alice, outsider, alice, bob]
    authors.append(alice)
    calls = [
        Call(
            user_id=author.id,
            started_at=start + timedelta(minutes=n),
            duration=timedelta(seconds=61 * n, milliseconds=n),
            price_micros=(n + 1) * 1_234_567 % 9_000_000 + 1,
            endpoint=ENDPOINTS[n % len(ENDPOINTS)],
        )
        for n, author in enumerate(authors)
    ]
    # One call priced by the list: /modeling at $0.50 per started minute, 2 min 1 s -> $1.50.
    calls[7] = Call(
        alice.id, start, timedelta(seconds=121), 1_500_000, "/modeling/cmd", explicit_price=False
    )
    with httpx.Client(base_url=server.base_url, timeout=HTTP_TIMEOUT) as http:
        for call in calls:  # one after the other: created_at ascends in this order
            response = http.post(
                "/api-calls", content=call.body(), headers={**JSON, **bearer(token)}
            )
            assert response.status_code == 201, response.text
        pages, page_token = 0, None
        while pages == 0 or page_token:
            params = {"limit": 3, **({"page_token": page_token} if page_token else {})}
            page = http.get("/user/api-calls", params=params, headers=alice.headers).json()
            pages, page_token = pages + 1, page["next_page"]
        assert pages == 3  # 8 calls, 3 a page
        forbidden = [
            http.get(f"/user/api-calls/{calls[0].id}", headers=bob.headers),
            http.get("/org/api-calls", headers=alice.headers),
            http.get(f"/users/{bob.id}/api-calls", headers=alice.headers),
            http.get("/api-calls", headers=alice.headers),
        ]
        assert [response.status_code for response in forbidden] == [404, 403, 403, 403]

    people_by_id = {p.id: p for p in (admin, alice, bob, outsider)}
    org_of = {admin.id: org_id, alice.id: org_id, bob.id: org_id, outsider.id: None}
    by_id = {call.id: call for call in calls}

    def check(items: list[SdkApiCall]) -> None:
        for item in items:
            call = by_id[str(item.id)]
            assert_sdk_call(item, call, org_of[call.user_id], people_by_id[call.user_id].email)

    of_alice = [call.id for call in calls if call.user_id == alice.id]
    of_org = [call.id for call in calls if call.user_id != outsider.id]
    everyone = [call.id for call in calls]
    descending = CreatedAtSortMode.CREATED_AT_DESCENDING

    listed: list[SdkApiCall] = list(alice.sdk.api_calls.user_list_api_calls(limit=3))
    assert sdk_ids(listed) == of_alice
    check(listed)
    newest_first = alice.sdk.api_calls.user_list_api_calls(limit=3, sort_by=descending)
    assert sdk_ids(newest_first) == of_alice[::-1]
    for item in listed:
        assert alice.sdk.api_calls.get_api_call_for_user(str(item.id)) == item

    org_listed: list[SdkApiCall] = list(admin.sdk.api_calls.org_list_api_calls(limit=3))
    assert sdk_ids(org_listed) == of_org
    check(org_listed)
    assert (
        sdk_ids(admin.sdk.api_calls.org_list_api_calls(limit=3, sort_by=descending))
        == (of_org[::-1])
    )
    of_bob = next(item for item in org_listed if str(item.user_id) == bob.id)
    assert admin.sdk.api_calls.get_api_call_for_org(str(of_bob.id)) == of_bob

    for who, identifier in ((staff, alice.id), (staff, alice.email), (alice, alice.id)):
        user_id = UserIdentifier(identifier)
        items: list[SdkApiCall] = list(
            who.sdk.api_calls.list_api_calls_for_user(id=user_id, limit=3)
        )
        assert sdk_ids(items) == of_alice
        check(items)

    all_listed: list[SdkApiCall] = list(staff.sdk.api_calls.list_api_calls(limit=3))
    assert sdk_ids(all_listed) == everyone
    check(all_listed)
    assert (
        sdk_ids(staff.sdk.api_calls.list_api_calls(limit=5, sort_by=descending)) == (everyone[::-1])
    )
    outside = staff.sdk.api_calls.get_api_call(calls[4].id)
    assert_sdk_call(outside, calls[4], None, outsider.email)


# --- 5. bad reports, refused without a trace --------------------------------------------------


BEFORE = "2026-02-28T23:59:59Z"


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, (status, response.text)
    body = response.json()
    assert set(body) == {"error_code", "message", "request_id"}, body
    assert body["error_code"] == code and body["message"]
    assert body["request_id"] == response.headers["X-Api-Call-Id"]
    message: str = body["message"]
    return message


async def test_bad_reports_are_refused_clearly_and_change_nothing(
    people: People, zoopay: Zoopay, server: LiveServer, engine: AsyncEngine
) -> None:
    alice, admin = people.users(2)
    org_id = make_org(server.base_url, admin, tier="team")
    token = service_token(zoopay, "product")
    good = Call(alice.id, datetime(2026, 3, 1, tzinfo=UTC), timedelta(seconds=3), 4_321)
    fields = good.fields()
    unknown = str(uuid4())
    bad_bodies: list[tuple[str, dict[str, Any], int, str]] = [
        ("unknown user", {**fields, "user_id": unknown}, 404, "not_found"),
        ("org the user is not in", {**fields, "org_id": org_id}, 400, "bad_request"),
        ("org that does not exist", {**fields, "org_id": unknown}, 400, "bad_request"),
        ("completed before started", {**fields, "completed_at": BEFORE}, 400, "bad_request"),
        ("negative price", {**fields, "price": "-0.01"}, 400, "bad_request"),
        ("negative price number", {**fields, "price": -1}, 400, "bad_request"),
        ("NaN price", {**fields, "price": "NaN"}, 400, "bad_request"),
        ("infinite price", {**fields, "price": "Infinity"}, 400, "bad_request"),
        ("7 decimals", {**fields, "price": "0.0000001"}, 400, "bad_request"),
        ("naive time", {**fields, "started_at": "2026-03-01T00:00:00"}, 400, "bad_request"),
        ("malformed id", {**fields, "id": "call-1"}, 400, "bad_request"),
        ("malformed user id", {**fields, "user_id": "42"}, 400, "bad_request"),
        ("malformed org id", {**fields, "org_id": "acme"}, 400, "bad_request"),
        ("malformed token id", {**fields, "token": "not-a-uuid"}, 400, "bad_request"),
        ("NUL in the endpoint", {**fields, "endpoint": "/file\u0000"}, 400, "bad_request"),
        ("NUL in the user agent", {**fields, "user_agent": "sdk\u0000"}, 400, "bad_request"),
        ("NUL in the origin", {**fields, "origin": "\u0000"}, 400, "bad_request"),
        ("NUL in the address", {**fields, "ip_address": "10.0.0.1\u0000"}, 400, "bad_request"),
    ]
    raw_nan = json.dumps(fields)[:-1] + ', "price": NaN}'
    raw_infinity = json.dumps(fields)[:-1] + ', "price": -Infinity}'
    many = [Call(alice.id, good.started_at, good.duration, 1_000) for _ in range(1001)]
    balances_before = await balance_rows(engine)
    counts_before = (await count(engine, api_calls), await count(engine, ledger_entries))

    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as http:
        headers = {**JSON, **bearer(token)}
        for name, body, status, code in bad_bodies:
            response = await http.post("/api-calls", json=body, headers=bearer(token))
            assert response.status_code == status, (name, response.text)
            error_of(response, status, code)
        # In a batch each call stands or falls alone: one result each, in order, none recorded.
        in_batch = await http.post(
            "/api-calls/batch",
            json={"calls": [body for _, body, _, _ in bad_bodies]},
            headers=bearer(token),
        )
        assert in_batch.status_code == 200, in_batch.text
        results = in_batch.json()["results"]
        assert len(results) == len(bad_bodies)
        for (name, body, status, code), result in zip(bad_bodies, results, strict=True):
            assert (result["id"], result["status"], result["price"]) == (body["id"], status, None)
            assert set(result["error"]) == {"error_code", "message", "request_id"}, name
            assert result["error"]["error_code"] == code and result["error"]["message"], name
        for raw in (raw_nan, raw_infinity):
            error_of(
                await http.post("/api-calls", content=raw, headers=headers), 400, "bad_request"
            )
        message = error_of(
            await http.post("/api-calls/batch", content=batch_body(many), headers=headers),
            400,
            "bad_request",
        )
        assert "1000" in message.replace(",", "")
        for body, status, code in (
            ({"user_id": unknown, "endpoint": "/file/x"}, 404, "not_found"),
            ({"user_id": alice.id, "org_id": org_id, "endpoint": "/file/x"}, 400, "bad_request"),
            ({"user_id": "alice", "endpoint": "/file/x"}, 400, "bad_request"),
        ):
            authorize = await http.post("/api-calls/authorize", json=body, headers=headers)
            error_of(authorize, status, code)
        error_of(
            await http.post("/api-calls", json=fields, headers=alice.headers), 403, "forbidden"
        )
        error_of(await http.post("/api-calls", json=fields), 401, "unauthorized")
        # An API call id in a path is a UUID: anything else names no call.
        error_of(await http.get("/user/api-calls/call-1", headers=alice.headers), 404, "not_found")

        assert await balance_rows(engine) == balances_before
        assert (await count(engine, api_calls), await count(engine, ledger_entries)) == (
            counts_before
        )
        # The same id, now reported well, lands: nothing of the refused reports was kept.
        status, body = await report(http, good, token)
        assert status == 201
        assert_reported(body, good, org_id=None, email=alice.email)
        # A batch of bad and good calls records the good ones only.
        second = Call(alice.id, good.started_at, good.duration, 1_234)
        first, third = str(uuid4()), str(uuid4())
        mixed = [
            {**fields, "id": first, "user_id": unknown},
            second.fields(),
            {**fields, "id": third, "price": "-1"},
        ]
        response = await http.post("/api-calls/batch", json={"calls": mixed}, headers=headers)
        assert [(r["id"], r["status"]) for r in response.json()["results"]] == [
            (first, 404),
            (second.id, 201),
            (third, 400),
        ]
    assert await count(engine, api_calls) == counts_before[0] + 2
    after = await balance_rows(engine)
    assert after[alice.id]["monthly"] == balances_before[alice.id]["monthly"] - 4_321 - 1_234
