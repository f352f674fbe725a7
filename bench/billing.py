"""The billing benchmark: `zoopay billing refresh` and `zoopay billing run` over many customers.

Run by `make bench` after bench/run.py (PostgreSQL on 127.0.0.1:5432). It seeds --customers
users (default 100,000) with set-based inserts (one statement per table, `generate_series`),
each on free or pro, anchored 40 days ago and with usage due, so that every one of them has a
period to refresh and to close, and each with a processor customer and a card on file. The
seeded database is a template: each command then runs on its own copy of it (`CREATE DATABASE
... TEMPLATE`), measured in the same run, so all see the same data. A third copy has its
processor customers and cards removed: the first bill of customers who never added a card, where
the run creates every processor customer itself and every charge is refused. The machine is
shared: the table records `uptime` before and after.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from zoopay.db import migrate

HERE = Path(__file__).parent
ADMIN_URL = os.environ.get(
    "ZOOPAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ZOOPAY = str(Path(sys.executable).with_name("zoopay"))

# Every 4th customer is on pro ($100 grant, $49 a month); the rest on free ($10 grant).
# Each spent its grant and ran up usage: 1.00 to 20.00 USD of total_due.
SEED = [
    """
    INSERT INTO users (id, email, name, is_staff, created_at, updated_at)
    SELECT gen_random_uuid()::text, 'bench-' || n || '@example.com', NULL, false, $1, $1
    FROM generate_series(1, $2) AS n
    """,
    """
    CREATE TEMP TABLE seeded AS
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM users WHERE email LIKE 'bench-%'
    """,
    """
    INSERT INTO balances (id, customer_kind, customer_id, monthly_micros, stable_micros,
                          total_due_micros, created_at, updated_at)
    SELECT gen_random_uuid()::text, 'user', id, 0, 0, (n % 20 + 1) * 1000000, $1, $1
    FROM seeded
    """,
    """
    INSERT INTO subscriptions (id, customer_kind, customer_id, tier, pay_annually, anchor_at,
                               period_start, closed_through, created_at, updated_at)
    SELECT gen_random_uuid()::text, 'user', id, CASE WHEN n % 4 = 0 THEN 'pro' ELSE 'free' END,
           false, $1, $1, $1, $1, $1
    FROM seeded
    """,
    """
    INSERT INTO monthly_grants (customer_id, period_start, granted_micros,
                                largest_grant_micros, updated_at)
    SELECT id, $1, g, g, $1
    FROM (SELECT id, CASE WHEN n % 4 = 0 THEN 100000000 ELSE 10000000 END AS g FROM seeded) s
    """,
    # Each has a card on file at the embedded processor (pm_card_visa), as a paying customer.
    """
    INSERT INTO processor_customers (id, email, name, metadata, default_payment_method_id,
                                     created_at, updated_at)
    SELECT 'cus_bench_' || n, 'bench-' || n || '@example.com', NULL, '{}', 'pm_bench_' || n,
           $1, $1
    FROM seeded
    """,
    """
    INSERT INTO processor_payment_methods (id, customer_id, token, brand, last4, exp_month,
                                           exp_year, country, funding, fingerprint, created_at)
    SELECT 'pm_bench_' || n, 'cus_bench_' || n, 'pm_card_visa', 'visa', '4242', 12, 2034, 'US',
           'credit', 'fp_visa_4242', $1
    FROM seeded
    """,
    """
    INSERT INTO payment_customers (customer_id, customer_kind, processor, processor_customer_id,
                                   phone, delinquent, created_at, updated_at)
    SELECT id, 'user', 'embedded', 'cus_bench_' || n, '', false, $1, $1
    FROM seeded
    """,
    # The ledger says what the balances say: the grant, the calls that spent it, what is due.
    """
    INSERT INTO ledger_entries (customer_id, bucket, delta_micros, balance_after_micros, actor,
                                reason, reference, created_at)
    SELECT s.id, e.bucket, e.delta, e.after, 'system', e.reason, NULL, $1
    FROM (SELECT id, n, CASE WHEN n % 4 = 0 THEN 100000000 ELSE 10000000 END AS g
          FROM seeded) s
    CROSS JOIN LATERAL (VALUES
        ('monthly', s.g, s.g, 'grant'),
        ('monthly', -s.g, 0::bigint, 'api_call'),
        ('total_due', (s.n % 20 + 1) * 1000000, (s.n % 20 + 1) * 1000000, 'api_call')
    ) AS e(bucket, delta, after, reason)
    """,
]


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def url_of(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def seed(url: str, customers: int, anchor: datetime) -> float:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        async with conn.transaction():
            for statement in SEED:
                args = [anchor, customers] if "$2" in statement else [anchor]
                if "$1" not in statement:
                    args = []
                await conn.execute(statement, *args)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


# The first bill of customers who never added a card (most free ones): no processor customer
# yet, so the run makes them all (set-based), and every charge is refused (no payment method).
WITHOUT_CARDS = [
    "DELETE FROM payment_customers",
    "DELETE FROM processor_payment_methods",
    "DELETE FROM processor_customers",
]


async def without_cards(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in WITHOUT_CARDS:
            await conn.execute(statement)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed(url: str, *args: str) -> tuple[float, dict[str, object]]:
    env = {**os.environ, "ZOOPAY_DATABASE_URL": url, "ZOOPAY_PROCESSOR": "embedded"}
    started = time.perf_counter()
    done = subprocess.run([ZOOPAY, *args], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"zoopay {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, json.loads(done.stdout)


def has_billing_run() -> bool:
    done = subprocess.run([ZOOPAY, "billing", "--help"], capture_output=True, text=True)
    return " run " in done.stdout or "│ run" in done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "billing.md")
    options = parser.parse_args()
    anchor = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    at = (anchor + timedelta(days=35)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    template = f"zoopay_bench_billing_{uuid.uuid4().hex[:8]}"
    copies = {command: f"{template}_{command}" for command in ("refresh", "run", "first")}
    rows = []
    load = [uptime()]
    try:
        asyncio.run(admin(f'CREATE DATABASE "{template}"'))
        migrate.upgrade(url_of(template))
        seconds = asyncio.run(seed(url_of(template), options.customers, anchor))
        print(f"seeded {options.customers:,} customers in {seconds:.1f} s", file=sys.stderr)
        for name in copies.values():
            asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        elapsed, answer = timed(url_of(copies["refresh"]), "billing", "refresh", "--at", at)
        assert answer == {"refreshed": options.customers}, answer
        rows.append(("zoopay billing refresh", elapsed, options.customers / elapsed, None))
        if has_billing_run():
            elapsed, answer = timed(url_of(copies["run"]), "billing", "run", "--at", at)
            rate = options.customers / elapsed
            rows.append(("zoopay billing run", elapsed, rate, rate >= 2000))
            assert answer["paid"] == options.customers, answer
            rerun, again = timed(url_of(copies["run"]), "billing", "run", "--at", at)
            rows.append(("  the same run again (idempotent)", rerun, None, None))
            assert again["invoiced"] == again["charged"] == 0, again
            checked, books = timed(url_of(copies["run"]), "ledger", "verify")
            assert books == {"ok": True, "problems": []}, books
            rows.append(("  zoopay ledger verify (clean)", checked, None, None))
            asyncio.run(without_cards(url_of(copies["first"])))
            elapsed, first = timed(url_of(copies["first"]), "billing", "run", "--at", at)
            assert first["invoiced"] == options.customers and first["paid"] == 0, first
            rate = options.customers / elapsed
            rows.append(("zoopay billing run, first bill, no card on file", elapsed, rate, None))
            print(json.dumps({"run": answer, "again": again, "no card": first}), file=sys.stderr)
        load.append(uptime())
    finally:
        for name in [*copies.values(), template]:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(options, rows, load)


def report(
    options: argparse.Namespace,
    rows: list[tuple[str, float, float | None, bool | None]],
    load: list[str],
) -> None:
    lines = [
        f"zoopay billing benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{options.customers:,} customers (every one with a period ended), {os.cpu_count()} cores",
        "",
        "| command | seconds | customers/s | target | met |",
        "|---|---|---|---|---|",
    ]
    for name, seconds, rate, met in rows:
        shown = f"{rate:,.0f}" if rate is not None else ""
        target = ">= 2,000/s" if met is not None else ""
        verdict = "" if met is None else ("yes" if met else "NO")
        lines.append(f"| {name} | {seconds:.1f} | {shown} | {target} | {verdict} |")
    rates = {name: rate for name, _, rate, _ in rows if rate is not None}
    if {"zoopay billing refresh", "zoopay billing run"} <= set(rates):
        ratio = rates["zoopay billing run"] / rates["zoopay billing refresh"]
        lines += ["", f"run/refresh (customers/s, same machine, same run): {ratio:.2f}"]
    lines += ["", f"command: {' '.join(sys.argv)}", *(f"uptime: {line}" for line in load)]
    text = "\n".join(lines)
    print(text)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
