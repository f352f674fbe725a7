"""Two builds of zoopay, hot path by hot path, in one session: old and new run side by side on
one database and are measured in turn (A B, then B A, ...), so that the machine's load, which
other work moves, weighs on both alike. The bare floor (bench/floor.py) is measured each round.

`python bench/compare.py --old /tmp/bench-old/.venv/bin/zoopay [--rounds 5] [--duration 5]`
(the old build: `git worktree add /tmp/bench-old COMMIT && make -C /tmp/bench-old lint`).
"""

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import ADMIN_URL, FloorServer, Server, admin, seed, wrk

from zoopay.db import migrate

PATHS = tuple(os.environ.get("ZOOPAY_COMPARE_PATHS", "report batch authorize balance").split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", type=Path, required=True, help="the old build's `zoopay`")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--port", type=int, default=8771)
    options = parser.parse_args()
    name = f"zoopay_compare_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    servers: list[Server] = []
    try:
        migrate.upgrade(url)
        workdir = Path(tempfile.mkdtemp(prefix="zoopay-compare-"))
        service = asyncio.run(seed(url, 1000, workdir))
        users, tokens = str(workdir / "users.txt"), str(workdir / "tokens.txt")
        w, kind, port = options.workers, options.server, options.port
        servers.append(Server(url, port, w, kind, zoopay=options.old))
        servers.append(Server(url, port + 1, w, kind))
        servers.append(FloorServer(port + 2, w, kind))
        compare(options, servers, service, users, tokens)
    finally:
        for server in servers:
            server.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def compare(
    options: argparse.Namespace, servers: list[Server], service: str, users: str, tokens: str
) -> None:
    old, new, floor = servers
    d, c = options.duration, options.connections

    def scripts(path: str) -> tuple[str, list[str], int]:
        return {
            "report": ("report.lua", [service, users, secrets.token_hex(4)], c),
            "batch": ("batch.lua", [service, users, secrets.token_hex(4)], 4),
            "authorize": ("authorize.lua", [service, users], c),
            "balance": ("balance.lua", [tokens], c),
        }[path]

    rps: dict[tuple[str, str], list[float]] = {}
    floors: list[float] = []
    print(f"load before: {_uptime()}", flush=True)
    for round_ in range(options.rounds):
        floor_args = [service, users, secrets.token_hex(4)]
        floors.append(wrk(floor.base, "report.lua", floor_args, d, c).rps)
        for path in PATHS:
            order = [("old", old), ("new", new)]
            for build, server in order if round_ % 2 == 0 else reversed(order):
                script, args, connections = scripts(path)
                result = wrk(server.base, script, args, d, connections)
                if result.errors:
                    print(f"{build} {path}: {result.errors} non-2xx answers", flush=True)
                rps.setdefault((path, build), []).append(result.rps)
        line = ", ".join(f"{p} {rps[(p, 'new')][-1] / rps[(p, 'old')][-1]:.3f}" for p in PATHS)
        print(f"round {round_ + 1}: floor {floors[-1]:,.0f}/s; new/old {line}", flush=True)
    print(f"load after: {_uptime()}")
    floor_rps = statistics.median(floors)
    print(f"\nfloor (bare ASGI, report body parsed): median {floor_rps:,.0f} req/s, runs {floors}")
    print(
        "| path | old req/s (median) | new req/s (median) | new/old | pairwise new/old | "
        "new / floor |"
    )
    print("|---|---|---|---|---|---|")
    for path in PATHS:
        olds, news = rps[(path, "old")], rps[(path, "new")]
        pairs = sorted(n / o for n, o in zip(news, olds, strict=True))
        o, n = statistics.median(olds), statistics.median(news)
        print(
            f"| {path} | {o:,.0f} | {n:,.0f} | {n / o:.3f} | "
            f"{' '.join(f'{p:.2f}' for p in pairs)} | {n / floor_rps:.3f} |"
        )


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    main()
