"""CPU per request of the hot paths, old build against new, without a load generator: each
build's app is driven in-process (through all of its middleware, 32 requests at a time) on one
PostgreSQL database, and the process's CPU time is divided by the requests it answered. CPU
time moves much less than throughput when other work shares the machine, so this resolves a
few percent where wrk, on a busy machine, cannot.

`python bench/pipeline_cpu.py --old /tmp/bench-old/.venv/bin/python [--rounds 5]`
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REQUESTS = {"report": 1600, "authorize": 960, "balance": 960, "batch": 12}
CONCURRENCY = 32


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from run import ADMIN_URL, admin, seed

    from zoopay.db import migrate

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=Path, required=True, help="the old build's python")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    name = f"zoopay_cpu_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate.upgrade(url)
        workdir = Path(tempfile.mkdtemp(prefix="zoopay-cpu-"))
        service = asyncio.run(seed(url, 200, workdir))
        builds = {"old": str(options.old), "new": sys.executable}
        found: dict[tuple[str, str], list[float]] = {}
        print(f"load before: {_uptime()}", flush=True)
        for round_ in range(options.rounds):
            order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
            for build in order:
                command = [builds[build], __file__, "child", url, str(workdir), service, build]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                for path, micros in json.loads(out.splitlines()[-1]).items():
                    found.setdefault((path, build), []).append(micros)
            line = ", ".join(
                f"{p} {found[(p, 'new')][-1] / found[(p, 'old')][-1]:.3f}" for p in REQUESTS
            )
            print(f"round {round_ + 1}: CPU new/old {line}", flush=True)
        print(f"load after: {_uptime()}")
        # The least is the estimate least disturbed by other work on the machine.
        print(
            "| path | old µs CPU/request (median; least) | new (median; least) | new/old "
            "(medians; least) | pairwise new/old |"
        )
        print("|---|---|---|---|---|")
        for path in REQUESTS:
            olds, news = found[(path, "old")], found[(path, "new")]
            pairs = sorted(n / o for n, o in zip(news, olds, strict=True))
            o, n = statistics.median(olds), statistics.median(news)
            print(
                f"| {path} | {o:,.1f}; {min(olds):,.1f} | {n:,.1f}; {min(news):,.1f} | "
                f"{n / o:.3f}; {min(news) / min(olds):.3f} | "
                f"{' '.join(f'{p:.3f}' for p in pairs)} |"
            )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# The child: runs in the build measured (its own venv), imports only that build's zoopay.


def _scope(method: str, path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def child(url: str, workdir: Path, service: str, build: str) -> dict[str, float]:
    from zoopay.app import create_app
    from zoopay.config import Settings

    users = (workdir / "users.txt").read_text().split()
    tokens = (workdir / "tokens.txt").read_text().split()
    app = create_app(Settings(database_url=url))
    counter = 0

    def report(user: str) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{build}-{os.getpid()}-{counter}")),
            "user_id": user,
            "endpoint": "/file/conversion",
            "method": "POST",
            "status_code": 200,
            "started_at": "2026-11-01T00:00:00Z",
            "completed_at": "2026-11-01T00:00:01Z",
        }

    def request(path: str, n: int) -> tuple[dict[str, Any], bytes]:
        user = users[n % len(users)]
        if path == "report":
            return _scope("POST", "/api-calls", service), json.dumps(report(user)).encode()
        if path == "batch":
            calls = [report(users[(n + i) % len(users)]) for i in range(1000)]
            return _scope("POST", "/api-calls/batch", service), json.dumps(
                {"calls": calls}
            ).encode()
        if path == "authorize":
            body = {"user_id": user, "endpoint": "/file/conversion"}
            return _scope("POST", "/api-calls/authorize", service), json.dumps(body).encode()
        return _scope("GET", "/user/payment/balance", tokens[n % len(tokens)]), b""

    async def run(path: str, count: int) -> None:
        concurrency = CONCURRENCY if path != "batch" else 4
        for start in range(0, count, concurrency):
            batch = [request(path, start + i) for i in range(concurrency)]
            statuses = await asyncio.gather(*(_call(app, s, b) for s, b in batch))
            assert all(200 <= s < 300 for s in statuses), (path, statuses)

    figures = {}
    async with app.router.lifespan_context(app):
        for path, count in REQUESTS.items():
            await run(path, max(count // 10, 8))  # warm: connections, prepared statements
            started = time.process_time()
            await run(path, count)
            figures[path] = 1e6 * (time.process_time() - started) / count
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _, _, url, workdir, service, build = sys.argv
        print(json.dumps(asyncio.run(child(url, Path(workdir), service, build))))
    else:
        main()
