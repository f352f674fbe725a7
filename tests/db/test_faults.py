"""When the database misbehaves: a writer holding its lock, a database that hangs or goes away,
a report queue that fills. Every request answers (503 `service_unavailable` at worst) within
the timeouts, and the server recovers by itself.

The hung and vanished databases are real: a TCP proxy started by the test sits between the app
and the run's PostgreSQL, and black-holes or closes its connections; the shared server itself
is never touched."""

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.metering.conftest import Meter
from tests.support.errors import assert_error
from tests.support.metering import SERVICE_TOKEN_ID, report
from zoopay.accounts import service as accounts
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import is_sqlite, transaction
from zoopay.db.tables import api_calls
from zoopay.errors import ServiceUnavailable
from zoopay.metering.batcher import CallRecorder
from zoopay.metering.service import Reported

# Generous: proves a request did not hang, not how fast it failed (measured and reported).
ANSWER_DEADLINE_SECONDS = 15
UNKNOWN_TOKEN = {"Authorization": "Bearer zoo_unknown"}
RECOVERY_DEADLINE_SECONDS = 60


def assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503)
    assert response.headers["retry-after"] == "1"


async def _timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    async with asyncio.timeout(ANSWER_DEADLINE_SECONDS * 4):  # a hang fails, not blocks, the run
        response = await request
    return response, time.monotonic() - started


@asynccontextmanager
async def write_lock_held(engine: AsyncEngine, database_url: str) -> AsyncIterator[None]:
    """Another client holds the write lock: on SQLite the database's, on PostgreSQL every
    table a write touches (plain reads still pass)."""
    if is_sqlite(engine):
        holder = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "LOCK TABLE balances, ledger_entries, api_calls, subscriptions IN EXCLUSIVE MODE"
            )
            yield
    finally:
        await conn.close()


async def test_reads_do_not_wait_for_a_writer_and_a_write_gets_503_in_time(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, database_url: str
) -> None:
    staff, alice, admin = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin)
    async with write_lock_held(engine, database_url):
        # None of these has been seen before: each token is looked up in the database.
        reads = [
            await client.get("/user/payment/balance", headers=alice.headers),
            await client.get("/org/payment/balance", headers=admin.headers),
            await client.get(f"/users/{alice.id}/payment/balance", headers=staff.headers),
            await client.get(f"/orgs/{org.id}/payment/balance", headers=staff.headers),
            await client.get("/user/payment/ledger", headers=alice.headers),
            await client.get("/user/api-calls", headers=alice.headers),
            await client.get("/readyz"),
        ]
        refused = await client.get("/user/payment/balance", headers=UNKNOWN_TOKEN)
        write, waited = await _timed(
            client.put(
                f"/users/{alice.id}/payment/balance",
                json={"stable_api_credits_remaining_monetary_value": "5"},
                headers=staff.headers,
            )
        )
    assert [r.status_code for r in reads] == [200] * len(reads), [r.text for r in reads]
    assert reads[0].json()["stable_api_credits_remaining_monetary_value"] == "0.00"
    assert_error(refused, 401)
    assert_unavailable(write)
    assert waited < ANSWER_DEADLINE_SECONDS
    again = await client.put(
        f"/users/{alice.id}/payment/balance",
        json={"stable_api_credits_remaining_monetary_value": "5"},
        headers=staff.headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["stable_api_credits_remaining_monetary_value"] == "5.00"


async def test_over_http_a_report_not_recorded_in_time_is_a_503_with_retry_after(
    app_settings: Settings,
    engine: AsyncEngine,
    catalog: Catalog,
    world: World,
    clock: Clock,
    database_url: str,
) -> None:
    alice = await world.user()
    app = create_app(app_settings, engine=engine, catalog=catalog)
    app.state.clock = lambda: clock.now
    # It waits less than the database waits for the lock: the report gives up first.
    app.state.call_recorder = CallRecorder(engine, catalog, wait_seconds=0.2)
    async with transaction(engine) as conn:
        token = await accounts.create_service_token(conn, service_name="p", now=clock.now)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://zoopay.test") as client:
            meter = Meter(client, token, clock)
            async with write_lock_held(engine, database_url):
                response, _ = await _timed(meter.report(meter.call(alice.id)))
    finally:
        await app.state.call_recorder.close()
    assert_unavailable(response)
    assert "send it again" in response.json()["message"]


async def test_a_full_report_queue_refuses_at_once_and_loses_nothing_it_took(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, database_url: str
) -> None:
    alice = await world.user()
    calls = [report(alice.id, clock) for _ in range(5)]
    recorder = CallRecorder(engine, catalog, writers=1, queue_limit=2, wait_seconds=60)
    try:
        async with write_lock_held(engine, database_url):
            # Queued before the writer runs: two are taken, the others refused at once.
            waits = [
                asyncio.ensure_future(recorder.record(Reported(c, SERVICE_TOKEN_ID), clock.now))
                for c in calls
            ]
            await asyncio.wait(waits, timeout=1)
            refused = [w for w in waits if w.done()]
            assert len(refused) == 3
            for wait in refused:
                assert isinstance(wait.exception(), ServiceUnavailable)
        outcomes = await asyncio.gather(*(w for w in waits if w not in refused))
    finally:
        await recorder.close()
    assert [o.status for o in outcomes] == [201, 201]
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(api_calls.c.id))).scalars())
    assert stored == {str(c.id) for c in calls[:2]}


async def test_a_report_whose_commit_does_not_come_is_a_503_within_its_bound(
    engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock, database_url: str
) -> None:
    alice = await world.user()
    call = report(alice.id, clock)
    # Shorter than the lock wait (the statement timeout): the report gives up first.
    recorder = CallRecorder(engine, catalog, wait_seconds=0.5)
    try:
        async with write_lock_held(engine, database_url):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable) as refused:
                async with asyncio.timeout(ANSWER_DEADLINE_SECONDS * 4):
                    await recorder.record(Reported(call, SERVICE_TOKEN_ID), clock.now)
            assert time.monotonic() - started < ANSWER_DEADLINE_SECONDS
        assert refused.value.headers == {"Retry-After": "1"}
        # Sent again once the database is free, it is recorded once.
        again = await recorder.record(Reported(call, SERVICE_TOKEN_ID), clock.now)
    finally:
        await recorder.close()
    assert again.status in (200, 201)
    async with engine.connect() as conn:
        stored = list((await conn.execute(select(api_calls.c.id))).scalars())
    assert stored == [str(call.id)]


# --- a database that hangs or goes away (PostgreSQL, behind a proxy) -------------------------


class Proxy:
    """TCP between the app and PostgreSQL that can hang (accept, never answer; the bytes of
    open connections held back) or refuse (close every connection, old and new)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode = "pass"
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "hang":
            self.flowing.clear()
            return
        self.flowing.set()
        if mode == "refuse":
            for writer in list(self.writers):
                writer.close()

    async def close(self) -> None:
        self.set("refuse")
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        self.writers.add(writer)
        try:
            await self.flowing.wait()  # a hung database accepts, and never answers
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self.writers.add(up_writer)
            pumps = [self._pump(reader, up_writer), self._pump(up_reader, writer)]
            await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for end in list(self.writers):
                if end in (writer,):
                    self.writers.discard(end)
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            self.tasks.discard(task)
            writer.close()


# A database behind a TCP proxy: the PostgreSQL run (on SQLite, the held write lock stands in).
pg_only = pytest.mark.postgres_only


@pytest.fixture
async def proxied(
    database_url: str, catalog: Catalog, clock: Clock
) -> AsyncIterator[tuple[Proxy, httpx.AsyncClient]]:
    """The app with its default timeouts, on the run's database through a proxy."""
    url = make_url(database_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    through = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=through), catalog=catalog)
    app.state.clock = lambda: clock.now
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://zoopay.test") as client:
            yield proxy, client
    finally:
        await app.state.call_recorder.close()
        proxy.set("pass")
        with suppress(Exception):
            await asyncio.wait_for(app.state.engine.dispose(), 30)
        await proxy.close()


async def _until_ready(client: httpx.AsyncClient) -> float:
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_DEADLINE_SECONDS:
        if (await client.get("/readyz")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    pytest.fail(f"not ready {RECOVERY_DEADLINE_SECONDS}s after the database came back")


@pg_only
@pytest.mark.parametrize("fault", ["hang", "refuse"])
async def test_a_database_that_hangs_or_goes_away_answers_503_in_time_and_recovers(
    proxied: tuple[Proxy, httpx.AsyncClient],
    world: World,
    engine: AsyncEngine,
    clock: Clock,
    fault: str,
) -> None:
    proxy, client = proxied
    alice = await world.user()
    async with transaction(engine) as conn:
        meter = Meter(
            client,
            await accounts.create_service_token(conn, service_name="p", now=clock.now),
            clock,
        )
    acknowledged = []
    first = await meter.report(meter.call(alice.id))
    assert first.status_code == 201, first.text
    acknowledged.append(first.json()["id"])
    assert (await client.get("/user/payment/balance", headers=alice.headers)).status_code == 200
    assert (await client.get("/readyz")).status_code == 200

    proxy.set(fault)
    answers = {
        "balance": await _timed(client.get("/user/payment/balance", headers=alice.headers)),
        "report": await _timed(meter.report(meter.call(alice.id))),
        "batch": await _timed(meter.batch([meter.call(alice.id)])),
        "new token": await _timed(
            client.get("/user/payment/balance", headers={"Authorization": "Bearer zoo_x"})
        ),
        "readyz": await _timed(client.get("/readyz")),
    }
    alive, _ = await _timed(client.get("/healthz"))
    print(f"\n{fault}: seconds to 503:", {k: round(t, 2) for k, (_, t) in answers.items()})
    for name, (response, seconds) in answers.items():
        assert_unavailable(response) if name != "readyz" else assert_error(response, 503)
        assert seconds < ANSWER_DEADLINE_SECONDS, (name, seconds)
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}

    proxy.set("pass")
    print(f"{fault}: seconds to ready after recovery: {await _until_ready(client):.2f}")
    balance = await client.get("/user/payment/balance", headers=alice.headers)
    assert balance.status_code == 200, balance.text
    later = await meter.report(meter.call(alice.id))
    assert later.status_code == 201, later.text
    acknowledged.append(later.json()["id"])
    batch = await meter.batch([meter.call(alice.id)])
    assert batch.status_code == 200 and batch.json()["results"][0]["status"] == 201
    acknowledged.append(batch.json()["results"][0]["id"])
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(api_calls.c.id))).scalars())
    assert set(acknowledged) <= stored
