"""Chromium (Debian's, headless) against a live `zoopay serve`, with every host name but this
machine's loopback made unresolvable, as on a machine with no internet:

- /docs renders Swagger UI's whole operation list, and the page asks nothing of anyone but
  zoopay (read from Chromium's own network log); a page that needs a CDN stays blank here;
- a page on another origin (another port) calls the API with a bearer token: from an origin in
  ZOOPAY_CORS_ORIGINS it reads the answers, from any other the browser refuses, and the write
  that needed a preflight never reaches the server.

`make test` installs Chromium if it is missing; without it these tests fail, they never skip.
"""

import html
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from tests.e2e.conftest import LiveServer, Zoopay, die_with_parent, serving

LOOPBACK = "127.0.0.1"
# Every name resolves to nothing; addresses on the loopback are reached as they are.
OFFLINE = f"MAP * ~NOTFOUND, EXCLUDE {LOOPBACK}"
CHROMIUM_LIMIT_SECONDS = 120
# Virtual time: Chromium runs the page's scripts this long, waiting on the network as it must.
SETTLE_MS = 5000


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is missing: `apt-get install chromium` (make test does it)")
    return found


@dataclass(frozen=True)
class Browser:
    executable: str
    profile: Path

    def dom(self, url: str, *, net_log: Path | None = None) -> str:
        """The page's DOM once its scripts have run."""
        args = [
            self.executable,
            "--headless",
            "--no-sandbox",  # tests run as root here
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={self.profile}",
            f"--host-resolver-rules={OFFLINE}",
            f"--virtual-time-budget={SETTLE_MS}",
            *([f"--log-net-log={net_log}"] if net_log else []),
            "--dump-dom",
            url,
        ]
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its helper processes too are ended below
            preexec_fn=die_with_parent,
        )
        try:
            stdout, stderr = process.communicate(timeout=CHROMIUM_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Chromium did not finish {url} in {CHROMIUM_LIMIT_SECONDS}s")
        finally:
            _end_group(process.pid)
            process.wait()
        assert process.returncode == 0, stderr[-3000:]
        return stdout


def _end_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Browser:
    return Browser(chromium, tmp_path / "profile")


def page_requests(net_log: Path) -> set[str]:
    """The addresses the page (not Chromium's own services) asked for: its requests are the ones
    partitioned under the loopback's site."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = f"http://{LOOPBACK} "
    return {
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start
        and event.get("params", {}).get("network_isolation_key", "").startswith(site)
    }


@contextmanager
def page_server(page: str) -> Iterator[str]:
    """Serve `page` at every path on a free loopback port; yields its origin."""
    body = page.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def operation_summaries(dom: str) -> set[str]:
    found = re.findall(r'class="opblock-summary-description"[^>]*>([^<]*)<', dom)
    return {html.unescape(text) for text in found}


# --- /docs -------------------------------------------------------------------------------------


def test_docs_render_offline_from_zoopays_own_assets(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    summaries = {op["summary"] for item in document["paths"].values() for op in item.values()}
    net_log = tmp_path / "net-log.json"

    dom = browser.dom(f"{server.base_url}/docs", net_log=net_log)

    assert operation_summaries(dom) == summaries
    assert {"Get balance for your user", "Get Pricing Subscriptions"} <= summaries
    assert page_requests(net_log) == {
        f"{server.base_url}{path}"
        for path in (
            "/docs",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui.css",
            "/docs/assets/favicon.png",
            "/openapi.json",
        )
    }


def test_a_page_that_needs_a_cdn_stays_blank_here(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    """The control: FastAPI's stock /docs page, as zoopay served it before, renders nothing with
    the network cut off as above, so the test above can tell."""
    stock = get_swagger_ui_html(openapi_url=f"{server.base_url}/openapi.json", title="stock")
    net_log = tmp_path / "net-log.json"

    with page_server(bytes(stock.body).decode()) as origin:
        dom = browser.dom(f"{origin}/docs", net_log=net_log)

    assert operation_summaries(dom) == set()
    asked = page_requests(net_log)
    assert any(url.startswith("https://cdn.jsdelivr.net/") for url in asked), asked


# --- CORS --------------------------------------------------------------------------------------

# Calls the API at `api` with `token` for each of `requests`, in order, and writes what the
# page could read of each answer (or the error fetch raised) into #results.
CALLER = """<!DOCTYPE html>
<html><body><pre id="results">pending</pre><script>
const given = JSON.parse(decodeURIComponent(location.hash.slice(1)));
async function call(request) {
  const headers = {...request.headers, "Authorization": "Bearer " + given.token};
  try {
    const response = await fetch(given.api + request.path,
                                 {method: request.method, headers, body: request.body});
    return {status: response.status, call_id: response.headers.get("X-Api-Call-Id"),
            body: await response.json()};
  } catch (error) {
    return {error: String(error)};
  }
}
(async () => {
  const results = [];
  for (const request of given.requests) results.push(await call(request));
  document.getElementById("results").textContent = JSON.stringify(results);
})();
</script></body></html>
"""


@dataclass(frozen=True)
class CorsScene:
    api: LiveServer
    allowed: str  # the origin of a page in ZOOPAY_CORS_ORIGINS
    other: str  # the origin of the same page on another port


@pytest.fixture(scope="module")
def cors_scene(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorsScene]:
    log = tmp_path_factory.mktemp("cors-server") / "zoopay-serve.log"
    with (
        page_server(CALLER) as allowed,
        page_server(CALLER) as other,
        serving(database_url, log, ZOOPAY_CORS_ORIGINS=allowed) as api,
    ):
        yield CorsScene(api, allowed, other)


def calls_from(
    browser: Browser, origin: str, api: LiveServer, token: str, org_name: str
) -> list[Any]:
    """What the page on `origin` could read of: the caller's balance, then creating an org."""
    given = {
        "api": api.base_url,
        "token": token,
        "requests": [
            # A hot path, served before FastAPI's router.
            {"method": "GET", "path": "/user/payment/balance"},
            # A JSON body, so the browser asks first for content-type too.
            {
                "method": "POST",
                "path": "/org",
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"name": org_name}),
            },
        ],
    }
    fragment = urllib.parse.quote(json.dumps(given))
    dom = browser.dom(f"{origin}/caller.html#{fragment}")
    found = re.search(r'<pre id="results">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, dom
    results: list[Any] = json.loads(html.unescape(found.group(1)))
    return results


def test_a_page_on_an_allowed_origin_calls_the_api(
    browser: Browser, cors_scene: CorsScene, zoopay: Zoopay
) -> None:
    user = zoopay.json("users", "create", f"browser-{uuid.uuid4().hex[:10]}@example.com")

    balance, org = calls_from(browser, cors_scene.allowed, cors_scene.api, user["token"], "Web")

    assert balance["status"] == 200
    assert balance["body"]["map_id"] == user["id"]
    assert balance["body"]["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert org["status"] == 201 and org["body"]["name"] == "Web"
    # The request id is exposed to the page, as it is to any other client.
    assert balance["call_id"] and org["call_id"] and balance["call_id"] != org["call_id"]
    seen = httpx.get(
        f"{cors_scene.api.base_url}/org", headers={"Authorization": f"Bearer {user['token']}"}
    )
    assert seen.status_code == 200 and seen.json()["id"] == org["body"]["id"]


def test_a_page_on_another_origin_is_refused(
    browser: Browser, cors_scene: CorsScene, zoopay: Zoopay
) -> None:
    user = zoopay.json("users", "create", f"browser-{uuid.uuid4().hex[:10]}@example.com")

    results = calls_from(browser, cors_scene.other, cors_scene.api, user["token"], "Web")

    assert results == [{"error": "TypeError: Failed to fetch"}] * 2
    # The POST needed a preflight, which was refused: it never reached the server.
    seen = httpx.get(
        f"{cors_scene.api.base_url}/org", headers={"Authorization": f"Bearer {user['token']}"}
    )
    assert seen.status_code == 404
