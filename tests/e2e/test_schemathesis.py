"""The OpenAPI document tells the truth: schemathesis, with every check, finds nothing.

A live `zoopay serve` is tested as each kind of caller sees it (staff, an org admin, a plain user,
a service token), with a fixed seed and a bounded number of examples per operation, under the
project's `schemathesis.toml` (the rules a schema cannot state, each with its reason).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import LiveServer, People, Zoopay

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = "8"
LIMIT_SECONDS = 600


def token_of(role: str, people: People, zoopay: Zoopay) -> str:
    if role == "service":
        return str(zoopay.json("tokens", "create", "--service", "schemathesis")["token"])
    account = people.user(staff=role == "staff")
    if role == "org_admin":
        zoopay.json("orgs", "create", "Fuzzed", "--admin", account.email)
    return account.token


@pytest.mark.parametrize("role", ["staff", "org_admin", "plain_user", "service"])
def test_schemathesis_finds_nothing(
    role: str, people: People, zoopay: Zoopay, server: LiveServer, tmp_path: Path
) -> None:
    token = token_of(role, people, zoopay)
    # Every check runs (schemathesis enables all by default); not `--checks all`, which would
    # override the one check schemathesis.toml turns off for the invitation (see there).
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--no-color",
            "--config-file",
            str(REPO / "schemathesis.toml"),
            "run",
            f"{server.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            EXAMPLES_PER_OPERATION,
            "--seed",
            "1",
            "--workers",
            "1",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=LIMIT_SECONDS,
        check=False,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, summary
