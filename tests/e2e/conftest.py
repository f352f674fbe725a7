"""End to end: the real `zoopay serve` on a free port, and the real `zoopay` command, both on
the run's database (SQLite or PostgreSQL, from `database_url`), driven over HTTP.

The server is started once per session. It keeps nothing a test depends on but the database,
which the autouse `clean_database` empties before every test; its first start creates the
bootstrap staff user, which that cleaning removes again, so every test makes its own people
with the `zoopay` command after the server is up.
"""

import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kittycad import KittyCAD

from tests.conftest import empty_database
from tests.support.cli import CLI_LIMIT_SECONDS, ZOOPAY, zoopay_env

BIN = Path(sys.executable).parent
STARTUP_LIMIT_SECONDS = 60


@dataclass(frozen=True)
class Zoopay:
    """The `zoopay` console script, run as a subprocess on the run's database."""

    database_url: str

    def start(self, *args: str) -> "subprocess.Popen[str]":
        return subprocess.Popen(
            [str(ZOOPAY), *args],
            env=zoopay_env(self.database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ZOOPAY), *args],
            env=zoopay_env(self.database_url),
            capture_output=True,
            text=True,
            timeout=CLI_LIMIT_SECONDS,
            check=False,
        )

    def json(self, *args: str) -> dict[str, Any]:
        """Run a command that must succeed; its stdout is one JSON object."""
        result = self.run(*args)
        assert result.returncode == 0, f"zoopay {' '.join(args)}: {result.stderr}"
        loaded: dict[str, Any] = json.loads(result.stdout)
        return loaded


@pytest.fixture(scope="session")
def zoopay(database_url: str) -> Zoopay:
    return Zoopay(database_url)


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(process: "subprocess.Popen[bytes]", base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"zoopay serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/pricing/subscriptions", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"zoopay serve did not answer within {STARTUP_LIMIT_SECONDS}s:\n{log.read_text()}")


def die_with_parent() -> None:
    """Run in the server's process before it starts: on Linux, have the kernel send it SIGTERM
    when the test process dies, so that not even a killed test run leaves a server behind."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(database_url: str, log: Path, **settings: str) -> Iterator[LiveServer]:
    """`zoopay serve` on a free port, with ZOOPAY_* `settings` beside the database; stopped
    (killed if it must be) on leaving, and by the kernel if the test process dies first."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**zoopay_env(database_url), **settings, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ZOOPAY), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        wait_until_serving(process, base_url, log)
        yield LiveServer(base_url, log)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The session's `zoopay serve`, on its first start."""
    empty_database(database_url)  # so that this is the server's first start
    log = tmp_path_factory.mktemp("server") / "zoopay-serve.log"
    with serving(database_url, log) as live:
        yield live


@dataclass(frozen=True)
class Account:
    """A user made with `zoopay users create`, and the SDK and headers that act as them."""

    id: str
    email: str
    token: str
    sdk: KittyCAD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class People:
    """Makes users with the `zoopay` command (several at once in parallel processes)."""

    zoopay: Zoopay
    server: LiveServer
    clients: list[KittyCAD] = field(default_factory=list)

    def sdk(self, token: str) -> KittyCAD:
        client = KittyCAD(token=token, base_url=self.server.base_url)
        self.clients.append(client)
        return client

    def users(self, count: int, *, staff: bool = False) -> list[Account]:
        emails = [f"e2e-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count)]
        flags = ["--staff"] if staff else []
        processes = [self.zoopay.start("users", "create", email, *flags) for email in emails]
        accounts = []
        for email, process in zip(emails, processes, strict=True):
            stdout, stderr = process.communicate(timeout=CLI_LIMIT_SECONDS)
            assert process.returncode == 0, f"zoopay users create {email}: {stderr}"
            created = json.loads(stdout)
            accounts.append(
                Account(created["id"], email, created["token"], self.sdk(created["token"]))
            )
        return accounts

    def user(self, *, staff: bool = False) -> Account:
        return self.users(1, staff=staff)[0]

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def people(zoopay: Zoopay, server: LiveServer) -> Iterator[People]:
    made = People(zoopay, server)
    yield made
    made.close()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """Raw HTTP to the live server, for error statuses (kittycad 1.2.0 cannot report them)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client
