"""The README's Walkthrough, run as written (its `sh` blocks, in bash) against a live server, so
that it stays true; and the rehearsal flag it relies on, `billing run --allow-future`, refused
where it would be dangerous."""

import io
import json
import os
import re
import subprocess
from pathlib import Path

from pypdf import PdfReader

from tests.e2e.conftest import BIN, ZOOPAY, LiveServer
from tests.support.cli import zoopay_env

README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH_LIMIT_SECONDS = 300


def walkthrough() -> str:
    section = README.read_text().split("\n## Walkthrough\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the README's Walkthrough has no sh block"
    return "\n".join(blocks)


def test_the_readme_walkthrough_runs_as_written(
    server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    env = {
        **zoopay_env(database_url),
        "BASE": server.base_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WALKTHROUGH_LIMIT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    [balance] = [a for a in answers if "stable_api_credits_remaining_monetary_value" in a]
    assert balance["stable_api_credits_remaining_monetary_value"] == "25.00"
    assert balance["subscription_details"]["modeling_app"]["name"] == "pro"
    [run] = [a for a in answers if "invoiced" in a]
    assert (run["closed"], run["invoiced"], run["paid"], run["failed"]) == (1, 1, 1, 0)
    assert "--allow-future" in done.stderr and "rehearsal" in done.stderr
    listed = [line.split(" ", 3) for line in lines if re.match(r"ZP-\d{6} ", line)]
    assert [row[:3] for row in listed] == [
        ["ZP-000003", "paid", "49.00"],  # the period close: next month's Pro fee
        ["ZP-000002", "paid", "25.00"],  # the credits
        ["ZP-000001", "paid", "48.99"],  # the upgrade: the rest of the period, rounded down
    ]
    text = PdfReader(io.BytesIO((tmp_path / "invoice.pdf").read_bytes())).pages[0].extract_text()
    assert "ZP-000003" in text and "Pro plan" in text and "49.00 USD" in text
    assert lines[-1] == '{"ok": true, "problems": []}'


def _billing_run(
    database_url: str, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZOOPAY), "billing", "run", *args],
        env={**zoopay_env(database_url), **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_billing_run_takes_a_future_moment_only_as_an_embedded_rehearsal(
    database_url: str,
) -> None:
    future = "2099-01-01T00:00:00+0000"
    refused = _billing_run(database_url, "--at", future)
    assert (refused.returncode, refused.stdout) == (1, "")
    error = json.loads(refused.stderr)
    assert error["error_code"] == "bad_request"
    assert "future" in error["message"] and "--allow-future" in error["message"]

    on_stripe = _billing_run(
        database_url,
        "--at",
        future,
        "--allow-future",
        ZOOPAY_PROCESSOR="stripe",
        ZOOPAY_STRIPE_API_KEY="sk_test_walkthrough",
        ZOOPAY_STRIPE_API_BASE="http://127.0.0.1:9",  # never called: refused before
    )
    assert (on_stripe.returncode, on_stripe.stdout) == (1, "")
    error = json.loads(on_stripe.stderr)
    assert error["error_code"] == "bad_request" and "embedded" in error["message"]

    rehearsed = _billing_run(database_url, "--at", future, "--allow-future")
    assert rehearsed.returncode == 0, rehearsed.stderr
    assert json.loads(rehearsed.stdout)["closed"] == 0  # nobody here to bill
    assert "rehearsal" in rehearsed.stderr
