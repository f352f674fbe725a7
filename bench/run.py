"""The metering benchmark: zoopay's hot paths against baselines taken in the same run.

Run with `make bench` (PostgreSQL on 127.0.0.1:5432, wrk and pgbench on the PATH). Every
figure is the median of --runs runs; the table compares each with its baseline and target.
"""

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from zoopay.accounts import service as accounts
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import load_catalog
from zoopay.db import migrate
from zoopay.db.engine import create_engine, transaction
from zoopay.subscriptions.service import change_plan

HERE = Path(__file__).parent
LUA = HERE / "lua"
ADMIN_URL = os.environ.get(
    "ZOOPAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float | None
    target: str
    met: bool


def sh(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(url: str, customers: int, workdir: Path) -> str:
    """Users on pro (overage allowed), their tokens, a service token; files for wrk."""
    catalog = load_catalog()
    engine = create_engine(url)
    now = datetime.now(UTC)
    user_ids, tokens = [], []
    async with transaction(engine) as conn:
        for n in range(customers):
            user = await accounts.create_user(
                conn, catalog=catalog, email=f"bench-{n}@example.com", now=now
            )
            await change_plan(
                conn,
                catalog=catalog,
                customer=user.customer,
                tier=TierName.PRO,
                pay_annually=None,
                actor=user.id,
                now=now,
            )
            user_ids.append(user.id)
            tokens.append(await accounts.create_token(conn, user=user, now=now))
        service_token = await accounts.create_service_token(conn, service_name="bench", now=now)
    await engine.dispose()
    (workdir / "users.txt").write_text("\n".join(user_ids) + "\n")
    (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE bench_customers (n int PRIMARY KEY, customer_id text)")
    await conn.copy_records_to_table("bench_customers", records=list(enumerate(user_ids, start=1)))
    await conn.close()
    return service_token


class Server:
    """`zoopay serve` (by default this venv's; `zoopay` names another build's, to compare)."""

    def __init__(
        self, url: str, port: int, workers: int, server: str, zoopay: Path | None = None
    ) -> None:
        env = {**os.environ, "ZOOPAY_DATABASE_URL": url, "ZOOPAY_LOG_LEVEL": "warning"}
        command = [
            str(zoopay or Path(sys.executable).parent / "zoopay"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--server",
            server,
        ]
        self._start(command, env, port, "/ping")

    def _start(self, command: list[str], env: dict[str, str], port: int, probe: str) -> None:
        self.process = subprocess.Popen(command, env=env, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + probe).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{command[0]} did not start")

    def rss_mb(self) -> tuple[float, float]:
        """(largest process, whole tree) resident memory in MB."""
        pids = [self.process.pid, *_children(self.process.pid)]
        sizes = [_rss_kb(pid) / 1024 for pid in pids]
        return max(sizes), sum(sizes)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


class FloorServer(Server):
    """bench/floor.py under the same HTTP server and workers: the floor of the hot paths."""

    def __init__(self, port: int, workers: int, server: str) -> None:
        command = [sys.executable, str(HERE / "floor.py"), str(port), str(workers), server]
        self._start(command, dict(os.environ), port, "/")


def _children(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for part in child.read_text().split():
            found.append(int(part))
            found.extend(_children(int(part)))
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


@dataclass
class WrkResult:
    rps: float
    p99_ms: float
    errors: int
    answered: int  # responses wrk read, 2xx or not


def wrk(base: str, script: str, args: list[str], duration: int, connections: int) -> WrkResult:
    out = sh(
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA / script),
        base,
        "--",
        *args,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    answered = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p99_ms, errors, answered)


def settle(idle: float = 0.8, limit: float = 30.0) -> None:
    """Wait until the machine is idle, so that no measurement pays for the last one's work."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _cpu_times()
        time.sleep(1.0)
        after = _cpu_times()
        busy = (after[0] - before[0]) / max(after[1] - before[1], 1)
        if busy < 1 - idle:
            return


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def pgbench(url: str, duration: int, connections: int, customers: int) -> float:
    settle()
    out = sh(
        "pgbench",
        "-n",
        f"-c{connections}",
        "-j2",
        f"-T{duration}",
        "-D",
        f"customers={customers}",
        "-f",
        str(LUA / "report.pgbench.sql"),
        url,
    )
    return float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--memory-calls", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "latest.md")
    options = parser.parse_args()
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (make bench installs it)")

    name = f"zoopay_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    server = floor = None
    try:
        migrate.upgrade(url)
        workdir = Path(tempfile.mkdtemp(prefix="zoopay-bench-"))
        service_token = asyncio.run(seed(url, options.customers, workdir))
        users, tokens = str(workdir / "users.txt"), str(workdir / "tokens.txt")
        server = Server(url, options.port, options.workers, options.server)
        floor = FloorServer(options.port + 1, options.workers, options.server)
        figures = measure(options, url, server, floor, service_token, users, tokens)
    finally:
        for running in (server, floor):
            if running is not None:
                running.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(options, figures)


def measure(
    options: argparse.Namespace,
    url: str,
    server: Server,
    floor: Server,
    service: str,
    users: str,
    tokens: str,
) -> list[Figure]:
    d, c = options.duration, options.connections
    runs: dict[str, list[WrkResult | float]] = {
        k: [] for k in ("pgbench", "floor", "report", "batch", "ping", "authorize", "balance")
    }
    reported = 0
    for run in range(options.runs):
        print(f"run {run + 1}/{options.runs}", file=sys.stderr, flush=True)
        runs["pgbench"].append(pgbench(url, d, c, options.customers))
        # The report's own requests, answered by the bare app: the floor of every hot path.
        runs["floor"].append(
            wrk(floor.base, "report.lua", [service, users, secrets.token_hex(4)], d, c)
        )
        result = wrk(server.base, "report.lua", [service, users, secrets.token_hex(4)], d, c)
        runs["report"].append(result)
        reported += result.answered - result.errors
        result = wrk(server.base, "batch.lua", [service, users, secrets.token_hex(4)], d, 4)
        runs["batch"].append(result)
        reported += (result.answered - result.errors) * 1000
        runs["ping"].append(wrk(server.base, "ping.lua", [], d, c))
        runs["authorize"].append(wrk(server.base, "authorize.lua", [service, users], d, c))
        runs["balance"].append(wrk(server.base, "balance.lua", [tokens], d, c))
    while reported < options.memory_calls:
        result = wrk(server.base, "batch.lua", [service, users, secrets.token_hex(4)], d, 4)
        reported += (result.answered - result.errors) * 1000
    largest, total = server.rss_mb()
    recorded = asyncio.run(count_calls(url))
    # Requests still in flight when wrk stops are recorded but not counted as answered.
    print(f"calls answered 2xx: {reported:,}; recorded in the database: {recorded:,}")
    if recorded < reported:
        sys.exit("fewer calls recorded than answered: the benchmark's figures are void")
    return figures_of(runs, reported, largest, total)


async def count_calls(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM api_calls"))
    finally:
        await conn.close()


def figures_of(
    runs: dict[str, list[WrkResult | float]], reported: int, largest: float, total: float
) -> list[Figure]:
    def rps(key: str) -> float:
        return median([r.rps for r in runs[key] if isinstance(r, WrkResult)])

    def p99(key: str) -> float:
        return median([r.p99_ms for r in runs[key] if isinstance(r, WrkResult)])

    naive = median([r for r in runs["pgbench"] if isinstance(r, float)])
    ping, floor = rps("ping"), rps("floor")

    def of_floor(name: str, key: str) -> Figure:
        # The time a request costs beyond the floor's, in µs of the whole machine's wall clock.
        beyond = 1e6 * (1 / rps(key) - 1 / floor)
        return Figure(
            f"  {name} / floor; µs a request beyond it",
            rps(key) / floor,
            "x",
            f"{beyond:,.0f} µs",
            None,
            "",
            True,
        )

    figures = [
        Figure(
            "bare ASGI floor: report body read, JSON parsed, small JSON answered (req/s)",
            floor,
            "/s",
            "",
            None,
            "",
            True,
        ),
        Figure(
            "POST /api-calls (calls/s)",
            rps("report"),
            "/s",
            "pgbench naive debit (tps)",
            naive,
            ">= 1.0x",
            rps("report") >= naive,
        ),
        of_floor("POST /api-calls", "report"),
        Figure(
            "POST /api-calls/batch (calls/s)",
            rps("batch") * 1000,
            "/s",
            "",
            None,
            ">= 20,000/s",
            rps("batch") * 1000 >= 20_000,
        ),
        of_floor("POST /api-calls/batch (requests of 1,000)", "batch"),
        Figure(
            "POST /api-calls/authorize (req/s)",
            rps("authorize"),
            "/s",
            "GET /ping (req/s)",
            ping,
            ">= 0.5x",
            rps("authorize") >= ping / 2,
        ),
        Figure(
            "  its p99 (ms)", p99("authorize"), "ms", "", None, "<= 20 ms", p99("authorize") <= 20
        ),
        of_floor("POST /api-calls/authorize", "authorize"),
        Figure(
            "GET /user/payment/balance (req/s)",
            rps("balance"),
            "/s",
            "GET /ping (req/s)",
            ping,
            ">= 0.5x",
            rps("balance") >= ping / 2,
        ),
        Figure("  its p99 (ms)", p99("balance"), "ms", "", None, "<= 20 ms", p99("balance") <= 20),
        of_floor("GET /user/payment/balance", "balance"),
        of_floor("GET /ping", "ping"),
        Figure(
            f"RSS after {reported:,} calls, largest process (MB)",
            largest,
            "MB",
            f"all processes: {total:.0f} MB",
            None,
            "<= 250 MB",
            largest <= 250,
        ),
    ]
    errors = sum(r.errors for rs in runs.values() for r in rs if isinstance(r, WrkResult))
    if errors:
        print(f"warning: {errors} unexpected responses during the run", file=sys.stderr)
    return figures


def report(options: argparse.Namespace, figures: list[Figure]) -> None:
    lines = [
        f"zoopay benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: server {options.server}, "
        f"{options.workers} workers, {options.connections} connections, {options.duration}s x "
        f"median of {options.runs}, {options.customers} customers, {os.cpu_count()} cores",
        "",
        "| figure | zoopay | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        ratio = f"{f.value / f.baseline:.2f}x" if f.baseline else ""
        baseline = f"{f.baseline_name} {f.baseline:,.0f}" if f.baseline else f.baseline_name
        met = ("yes" if f.met else "NO") if f.target else ""
        value = f"{f.value:.3f}x" if f.unit == "x" else f"{f.value:,.1f}"
        lines.append(f"| {f.name} | {value} | {baseline} | {ratio} | {f.target} | {met} |")
    text = "\n".join(lines)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
