"""Support for the live metering tests: more `zoopay serve` processes (which a test may
SIGKILL and restart), calls as a product reports them, and the invariants of the money read
straight from the database.

Every wait here is bounded, and every process started here is killed by its fixture's
finalizer (and by the kernel, through PR_SET_PDEATHSIG, if the test process dies first).
"""

import json
import math
import os
import signal
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import (
    ZOOPAY,
    Account,
    LiveServer,
    Zoopay,
    die_with_parent,
    free_port,
    stop,
    wait_until_serving,
)
from tests.support.cli import zoopay_env
from tests.support.http import add_card
from zoopay.db.tables import api_calls, balances, ledger_entries

KILL_WAIT_SECONDS = 15
SERVE = ("serve", "--server", "uvicorn", "--host", "127.0.0.1", "--workers", "1")
HTTP_TIMEOUT = httpx.Timeout(60.0)
BUCKETS = ("monthly", "stable", "total_due")
BALANCE_COLUMNS = {
    "monthly": "monthly_micros",
    "stable": "stable_micros",
    "total_due": "total_due_micros",
}


# --- servers -------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One `zoopay serve --workers 1` on a fixed port; startable again after a kill."""

    database_url: str
    log: Path
    port: int = field(default_factory=free_port)
    process: "subprocess.Popen[bytes] | None" = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def live(self) -> LiveServer:
        return LiveServer(self.base_url, self.log)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(ZOOPAY), *SERVE, "--port", str(self.port)],
                env={**zoopay_env(self.database_url), "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_until_serving(self.process, self.base_url, self.log)

    def serving_pid(self) -> int:
        """The process that holds the listening socket: the real uvicorn server (with one
        worker, `zoopay serve` runs uvicorn in its own process; never a supervisor)."""
        assert self.process is not None and self.process.poll() is None
        holders = [pid for pid in _process_tree(self.process.pid) if _listens(pid, self.port)]
        assert holders == [self.process.pid], (holders, self.process.pid)
        return holders[0]

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no flushing, in-flight requests cut off."""
        assert self.process is not None
        os.kill(self.serving_pid(), signal.SIGKILL)
        self.process.wait(timeout=KILL_WAIT_SECONDS)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def _process_tree(root: int) -> list[int]:
    """`root` and its descendants, from the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(after_name[1])].append(int(stat.parent.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(parents.get(pid, []))
    return pids


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _listens(pid: int, port: int) -> bool:
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process ended meanwhile
        return False
    for fd in descriptors:
        try:
            if os.readlink(fd) in sockets:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


# --- people, orgs and tokens ---------------------------------------------------------------


def service_token(zoopay: Zoopay, name: str) -> str:
    token: str = zoopay.json("tokens", "create", "--service", name)["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_org(base_url: str, admin: Account, *members: Account, tier: str | None = None) -> str:
    """An org made over HTTP by its admin, with members, optionally on a tier."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
        created = http.post("/org", json={"name": "Metered"}, headers=admin.headers)
        assert created.status_code == 201, created.text
        for member in members:
            invited = http.post(
                "/org/members",
                json={"email": member.email, "role": "member"},
                headers=admin.headers,
            )
            assert invited.status_code == 201, invited.text
            path = f"/user/org-invitations/{invited.json()['id']}/accept"
            accepted = http.post(path, headers=member.headers)
            assert accepted.status_code == 200, accepted.text
        if tier is not None:
            add_card(http, admin.headers, "/org")  # the plan is paid for
            subscribed = http.put(
                "/org/payment/subscriptions", json={"modeling_app": tier}, headers=admin.headers
            )
            assert subscribed.status_code == 200, subscribed.text
    org_id: str = created.json()["id"]
    return org_id


def set_buckets(base_url: str, staff: Account, path: str, monthly: str, stable: str) -> None:
    body = {
        "monthly_api_credits_remaining_monetary_value": monthly,
        "stable_api_credits_remaining_monetary_value": stable,
    }
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
        response = http.put(path, json=body, headers=staff.headers)
    assert response.status_code == 200, response.text


def buckets_over_http(base_url: str, staff: Account, path: str) -> dict[str, int]:
    """A balance as the API shows it, in micro-dollars."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
        response = http.get(path, headers=staff.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return {
        "monthly": micros(body["monthly_api_credits_remaining_monetary_value"]),
        "stable": micros(body["stable_api_credits_remaining_monetary_value"]),
        "total_due": micros(body["total_due"]),
    }


# --- calls ---------------------------------------------------------------------------------


def micros(dollars: str | float) -> int:
    exact = Decimal(str(dollars)).scaleb(6)
    assert exact == exact.to_integral_value(), dollars
    return int(exact)


def dollars(amount_micros: int) -> str:
    return format(Decimal(amount_micros).scaleb(-6), "f")


INDIA = timezone(timedelta(hours=5, minutes=30))


@dataclass(frozen=True)
class Call:
    """One API call a product reports, with an explicit price in micro-dollars."""

    user_id: str
    started_at: datetime
    duration: timedelta
    price_micros: int
    endpoint: str = "/file/conversion"
    org_id: str | None = None
    explicit_price: bool = True  # False: priced by the list, which must come to price_micros
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def minutes(self) -> int:
        return math.ceil((self.duration // timedelta(milliseconds=1)) / 60_000)

    def fields(self, *, other_spelling: bool = False) -> dict[str, Any]:
        """The report. `other_spelling` writes the same content differently: timestamps in
        another time zone and the price as a JSON number rather than a string."""
        zone = INDIA if other_spelling else UTC
        report: dict[str, Any] = {
            "id": self.id,
            "user_id": self.user_id,
            "endpoint": self.endpoint,
            "method": "POST",
            "status_code": 200,
            "started_at": self.started_at.astimezone(zone).isoformat(),
            "completed_at": (self.started_at + self.duration).astimezone(zone).isoformat(),
            "ip_address": "10.1.2.3",
            "user_agent": "metering-e2e",
            "origin": "https://app.example.com",
        }
        if self.explicit_price:
            report["price"] = dollars(self.price_micros)
        if self.org_id is not None:
            report["org_id"] = self.org_id
        return report

    def body(self, *, other_spelling: bool = False) -> bytes:
        report = self.fields(other_spelling=other_spelling)
        if not other_spelling or not self.explicit_price:
            return json.dumps(report).encode()
        price = report.pop("price")
        return (json.dumps(report)[:-1] + f', "price": {price}}}').encode()


def batch_body(calls: list[Call]) -> bytes:
    return json.dumps({"calls": [call.fields() for call in calls]}).encode()


JSON = {"Content-Type": "application/json"}


async def report(
    client: httpx.AsyncClient, call: Call, token: str, *, other_spelling: bool = False
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/api-calls",
        content=call.body(other_spelling=other_spelling),
        headers={**JSON, **bearer(token)},
    )
    body: dict[str, Any] = response.json()
    return response.status_code, body


def assert_reported(body: Mapping[str, Any], call: Call, *, org_id: str | None, email: str) -> None:
    """The ApiCallWithPrice of a recorded call says what was reported."""
    assert body["id"] == call.id
    assert body["user_id"] == call.user_id
    assert body["org_id"] == org_id
    assert body["email"] == email
    assert micros(body["price"]) == call.price_micros
    assert body["minutes"] == call.minutes
    assert body["duration"] == call.duration // timedelta(milliseconds=1)
    assert datetime.fromisoformat(body["started_at"]) == call.started_at
    assert datetime.fromisoformat(body["completed_at"]) == call.started_at + call.duration
    assert (body["endpoint"], body["method"], body["status_code"]) == (call.endpoint, "POST", 200)


def spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def drain(monthly: int, stable: int, spent: int) -> dict[str, int]:
    """The buckets after `spent` was drawn: monthly first, then stable, the rest due."""
    from_monthly = min(spent, monthly)
    from_stable = min(spent - from_monthly, stable)
    return {
        "monthly": monthly - from_monthly,
        "stable": stable - from_stable,
        "total_due": spent - from_monthly - from_stable,
    }


# --- the database's view -------------------------------------------------------------------


async def recorded_calls(engine: AsyncEngine, customer_id: str | None = None) -> dict[str, Any]:
    """The recorded calls (of one customer, or all) by id; ids are unique or this fails."""
    query = select(api_calls)
    if customer_id is not None:
        query = query.where(api_calls.c.customer_id == customer_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "an API call id is recorded more than once"
    return by_id


async def ledger(engine: AsyncEngine, customer_id: str | None = None) -> list[Any]:
    """Ledger entries (of one customer, or all) in id order."""
    query = select(ledger_entries).order_by(ledger_entries.c.id)
    if customer_id is not None:
        query = query.where(ledger_entries.c.customer_id == customer_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).mappings().all())


async def balance_rows(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(balances))).mappings().all()
    return {
        row["customer_id"]: {bucket: row[column] for bucket, column in BALANCE_COLUMNS.items()}
        for row in rows
    }


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def assert_chains(entries: list[Any]) -> dict[str, dict[str, int]]:
    """Per customer and bucket, in id order, each entry's balance_after is the previous one's
    plus its delta, starting from zero; returns where each chain ends."""
    ends: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(BUCKETS, 0))
    for entry in entries:
        running = ends[entry["customer_id"]]
        running[entry["bucket"]] += entry["delta_micros"]
        assert entry["balance_after_micros"] == running[entry["bucket"]], (
            f"ledger chain broken at entry {entry['id']}: {dict(entry)}"
        )
    return dict(ends)


def assert_calls_debited_once(calls: Mapping[str, Any], entries: list[Any]) -> None:
    """Every `api_call` entry references a recorded call; every recorded call has exactly one
    set of entries (at most one per bucket), drawing monthly and stable down and due up, which
    together come to its price."""
    by_reference: dict[str, list[Any]] = defaultdict(list)
    for entry in entries:
        if entry["reason"] == "api_call":
            by_reference[entry["reference"]].append(entry)
    orphans = set(by_reference) - set(calls)
    assert not orphans, f"ledger entries of calls that are not recorded: {sorted(orphans)[:5]}"
    for call_id, call in calls.items():
        assert call["price_micros"] > 0, "the tests use no price 0"
        moves = by_reference.get(call_id, [])
        assert moves, f"call {call_id} was recorded but never debited"
        buckets = [move["bucket"] for move in moves]
        assert len(set(buckets)) == len(buckets), f"call {call_id} debited twice: {moves}"
        assert all(m["customer_id"] == call["customer_id"] for m in moves)
        delta = {move["bucket"]: move["delta_micros"] for move in moves}
        assert delta.get("monthly", 0) <= 0 and delta.get("stable", 0) <= 0
        assert delta.get("total_due", 0) >= 0
        drawn = -delta.get("monthly", 0) - delta.get("stable", 0) + delta.get("total_due", 0)
        assert drawn == call["price_micros"], (call_id, moves)


async def assert_money_invariants(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Over the whole database: chains continuous, ledger sums equal to every balance, calls
    and their debits one to one. Returns the balances."""
    entries = await ledger(engine)
    ends = assert_chains(entries)
    held = await balance_rows(engine)
    for customer_id, buckets in held.items():
        assert ends.get(customer_id, dict.fromkeys(BUCKETS, 0)) == buckets, customer_id
    assert set(ends) <= set(held), "ledger entries of a customer without a balance"
    assert_calls_debited_once(await recorded_calls(engine), entries)
    return held
