"""localstripe as a subprocess on a free port of 127.0.0.1, for the `stripe` processor's tests.

localstripe is GPL: it is a test dependency (the `test` extra), run as a separate process and
never copied into the repository. What it does not do as Stripe does, and so what the tests
do around it: it ignores `Idempotency-Key` (zoopay's metadata lookup makes retries safe
anyway), it has no Search API (find_charge falls back to listing), a confirmed setup intent
does not attach its payment method to the customer (the tests attach it, as Stripe would have),
and it has no billing portal.
"""

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

RUNNER = Path(__file__).with_name("localstripe_server.py")
STARTUP_LIMIT_SECONDS = 30
# localstripe takes any key of this shape.
API_KEY = "sk_test_zoopay"
# What the console gives Stripe.js (ZOOPAY_STRIPE_PUBLISHABLE_KEY); localstripe never sees it.
PUBLISHABLE_KEY = "pk_test_zoopay"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # The kernel sends it SIGTERM if the test process dies first: no localstripe is left behind.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_until_serving(process: "subprocess.Popen[bytes]", base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}:\n{log.read_text()}")
        try:
            answer = httpx.get(
                f"{base_url}/v1/customers",
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=2,
            )
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    limit = STARTUP_LIMIT_SECONDS
    raise RuntimeError(f"localstripe did not answer in {limit}s:\n{log.read_text()}")


@contextmanager
def localstripe(log: Path) -> Iterator[str]:
    """A fresh localstripe; answers its base URL (for ZOOPAY_STRIPE_API_BASE)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # -P: the runner's own folder (tests/support, with its http.py) is not on sys.path.
            [sys.executable, "-P", str(RUNNER), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    try:
        _wait_until_serving(process, base_url, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
