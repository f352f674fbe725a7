"""A revocation reaches every process: two `zoopay serve --workers 2` on the run's database, a
token warm in the caches of both, revoked through one, refused by all.

No timing is asserted (bench/revocation.py measures the delay): the test polls with a generous
deadline until a run of fresh connections, spread over both workers of each server, are all
refused.
"""

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    ZOOPAY,
    Zoopay,
    die_with_parent,
    free_port,
    stop,
    wait_until_serving,
)
from tests.support.cli import zoopay_env

DEADLINE_SECONDS = 30
RUN = 20  # consecutive refusals, each on a new connection, that count as "refused by all"


@pytest.fixture(scope="module")
def two_servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    processes, urls = [], []
    try:
        for n in range(2):
            port = free_port()
            log: Path = tmp_path_factory.mktemp("servers") / f"zoopay-{n}.log"
            env = {
                **zoopay_env(database_url),
                # So that neither start makes the bootstrap staff user of the session's server.
                "ZOOPAY_BOOTSTRAP_STAFF_EMAIL": f"bootstrap-{uuid.uuid4().hex[:8]}@example.com",
            }
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(ZOOPAY), "serve", "--port", str(port), "--workers", "2"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_until_serving(process, urls[-1], log)
        yield urls
    finally:
        for process in processes:
            stop(process)


def fresh(url: str, token: str) -> int:
    """One balance read (a hot path) on a new connection, so that successive reads spread over
    the server's workers."""
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return httpx.get(f"{url}/user/payment/balance", headers=headers, timeout=30).status_code


def refused_by_all(url: str, token: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    run = 0
    while run < RUN:
        assert time.monotonic() < deadline, f"{url} still accepts the revoked token"
        run = run + 1 if fresh(url, token) == 401 else 0


def test_a_token_revoked_through_one_server_is_refused_by_every_process(
    two_servers: list[str], zoopay: Zoopay
) -> None:
    first, second = two_servers
    alice = zoopay.json("users", "create", f"e2e-{uuid.uuid4().hex[:12]}@example.com")
    made = httpx.post(
        f"{first}/user/api-tokens",
        params={"label": "two servers"},
        headers={"Authorization": f"Bearer {alice['token']}"},
    )
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    for url in two_servers:  # warm: every worker of both servers caches it
        assert [fresh(url, secret) for _ in range(RUN)] == [200] * RUN

    deleted = httpx.delete(
        f"{first}/user/api-tokens/{made.json()['id']}",
        headers={"Authorization": f"Bearer {alice['token']}"},
    )
    assert deleted.status_code == 204

    for url in (second, first):
        refused_by_all(url, secret)
    # Alice's other token still works on both.
    assert {fresh(url, alice["token"]) for url in two_servers} == {200}
