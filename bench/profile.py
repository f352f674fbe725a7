"""Where a hot path spends its time: py-spy samples one server worker under wrk load.

`python bench/profile.py [report|batch|authorize|balance|ping|floor]` prints the functions with the
most samples (self and total) and leaves the raw stacks in bench/out/profile-NAME.txt.
"""

import asyncio
import collections
import secrets
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import ADMIN_URL, HERE, LUA, FloorServer, Server, admin, seed

from zoopay.db import migrate

SCRIPTS = {
    "report": ("report.lua", 32),
    "batch": ("batch.lua", 4),
    "authorize": ("authorize.lua", 32),
    "balance": ("balance.lua", 32),
    "ping": ("ping.lua", 32),
    # bench/floor.py answering the report's requests: what the HTTP server itself costs.
    "floor": ("report.lua", 32),
}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "report"
    server_kind = sys.argv[2] if len(sys.argv) > 2 else "uvicorn"
    script, connections = SCRIPTS[name]
    database = f"zoopay_profile_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    server = None
    out = HERE / "out" / f"profile-{name}.txt"
    out.parent.mkdir(exist_ok=True)
    try:
        migrate.upgrade(url)
        workdir = Path(tempfile.mkdtemp())
        service = asyncio.run(seed(url, 200, workdir))
        if name == "floor":
            server = FloorServer(8766, 1, server_kind)
        else:
            server = Server(url, 8766, 1, server_kind)
        args = {
            "report": [service, str(workdir / "users.txt"), secrets.token_hex(4)],
            "floor": [service, str(workdir / "users.txt"), secrets.token_hex(4)],
            "batch": [service, str(workdir / "users.txt"), secrets.token_hex(4)],
            "authorize": [service, str(workdir / "users.txt")],
            "balance": [str(workdir / "tokens.txt")],
            "ping": [],
        }[name]
        pids = [server.process.pid]
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "--duration",
                "12",
                "--rate",
                "200",
                "--subprocesses",
                "--output",
                str(out),
                "--pid",
                str(pids[0]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wrk = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                "-d12s",
                "-s",
                str(LUA / script),
                server.base,
                "--",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        spy.wait(60)
        print(wrk.stdout)
    finally:
        if server is not None:
            server.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    summarize(out)


def summarize(raw: Path) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
            for f in stack.split(";")
        ]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    print(f"{samples} samples")
    print("self:")
    for frame, count in own.most_common(25):
        print(f"  {100 * count / samples:5.1f}%  {frame}")
    print("total:")
    for frame, count in total.most_common(40):
        print(f"  {100 * count / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
