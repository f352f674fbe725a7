"""The newest kittycad (installed by `make test` beside the pinned 1.2.0, its version pinned in
the Makefile), run as a probe script against a live server, and what every SDK test does first:
a card confirmed through zoopay's embedded processor."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import LiveServer

LATEST_SDK = Path(__file__).resolve().parents[2] / ".venv" / "kittycad-latest"

# kittycad 1.8.0 lists one page of a user's invoices.
LIST_INVOICES = r"""
import json, sys
from kittycad import KittyCAD
base_url, token = sys.argv[1:3]
client = KittyCAD(token=token, base_url=base_url)
items = list(client.payments.list_invoices_for_user(limit=1))
print(json.dumps([
    {"number": i.number, "total": i.total, "amount_paid": i.amount_paid,
     "amount_refunded": i.amount_refunded,
     "refund_status": getattr(i.refund_status, "value", i.refund_status),
     "status": getattr(i.status, "value", i.status), "lines": [line.amount for line in i.lines]}
    for i in items
]))
"""


def run_latest(server: LiveServer, probe: str, argument: str) -> Any:
    """What `probe`, run with the newest kittycad and given the server's base URL and
    `argument` (a token, or JSON of several), printed as JSON."""
    assert (LATEST_SDK / "kittycad").is_dir(), (
        f"{LATEST_SDK} is missing: `make test` installs it (the Makefile pins its version)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, server.base_url, argument],
        env={**os.environ, "PYTHONPATH": str(LATEST_SDK)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def confirm(http: httpx.Client, client_secret: str, token: str) -> dict[str, Any]:
    """Confirm a setup intent with one of Stripe's test cards (the embedded processor)."""
    answer = http.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": client_secret, "payment_method": token},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
