"""CORS with the headers Chromium sends: a preflight answered on every path (hot or not) for an
allowed origin, Access-Control-Allow-Origin on every answer to it (errors, 401, 413 and 500
included), and not one CORS header for any other origin or when ZOOPAY_CORS_ORIGINS is unset.
(tests/e2e/test_browser.py makes the same calls from a page in Chromium.)"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World, app_client
from tests.support.database import dump
from tests.support.errors import assert_error
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings

ALLOWED = "https://app.example.com"
OTHER = "https://other.example.com"

# What Chromium 156 sends before a cross-origin fetch with a bearer token and a JSON body,
# and with the request itself (less Host, Connection, User-Agent and Accept-Encoding).
BROWSER = {
    "accept": "*/*",
    "accept-language": "en-US,en;q=0.9",
    "sec-fetch-mode": "cors",
    "sec-fetch-site": "cross-site",
    "sec-fetch-dest": "empty",
}


def preflight(origin: str, method: str, headers: str = "authorization,content-type") -> Any:
    return {
        **BROWSER,
        "origin": origin,
        "referer": f"{origin}/",
        "access-control-request-method": method,
        "access-control-request-headers": headers,
    }


def actual(origin: str, token: str | None = None) -> dict[str, str]:
    headers = {**BROWSER, "origin": origin, "referer": f"{origin}/"}
    return headers | ({"authorization": f"Bearer {token}"} if token else {})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, cors_origins=[ALLOWED])


@pytest.fixture
async def no_cors(
    database_url: str, engine: AsyncEngine, catalog: Catalog, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url), engine=engine, catalog=catalog)
    async with app_client(app, clock) as client:
        yield client


async def every_operation(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    paths = (await client.get("/openapi.json")).json()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


# --- preflight ---------------------------------------------------------------------------------


async def test_a_preflight_is_answered_on_every_path(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    operations = await every_operation(client)
    # The hot paths, served before FastAPI's router, are among them, and so is a path that
    # does not exist (a browser asks before it knows).
    assert {("POST", "/api-calls"), ("POST", "/api-calls/authorize")} <= set(operations)
    before = await dump(engine)

    for method, path in [*operations, ("GET", "/no/such/path")]:
        response = await client.options(path, headers=preflight(ALLOWED, method))

        assert response.status_code == 200, (method, path, response.text)
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert method.lower() in listed(response.headers["access-control-allow-methods"])
        allowed_headers = listed(response.headers["access-control-allow-headers"])
        assert {"authorization", "content-type"} <= allowed_headers
        assert "origin" in listed(response.headers["vary"])
        assert response.headers["x-api-call-id"]
    assert await dump(engine) == before


async def test_a_preflight_allows_exactly_the_methods_and_headers_of_the_api(
    client: httpx.AsyncClient,
) -> None:
    # Chrome asks this too when a public page calls a private address.
    headers = {**preflight(ALLOWED, "GET"), "access-control-request-private-network": "true"}

    response = await client.options("/user/payment/balance", headers=headers)

    assert response.status_code == 200
    assert response.headers["access-control-allow-private-network"] == "true"

    assert listed(response.headers["access-control-allow-methods"]) == {
        "get",
        "post",
        "put",
        "delete",
    }
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        OTHER,
        "null",  # a sandboxed frame or a file:// page
        "http://app.example.com",  # the allowed host without TLS
        "https://app.example.com.evil.test",
        "https://app.example.com:8443",
    ],
)
async def test_a_preflight_from_another_origin_is_refused_without_cors_headers(
    client: httpx.AsyncClient, origin: str
) -> None:
    response = await client.options("/user/payment/balance", headers=preflight(origin, "GET"))

    assert_error(response, 403)
    assert origin in response.json()["message"]
    assert cors_headers(response) == {}


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("PATCH", "authorization", "method"),
        ("GET", "authorization,x-zoopay-admin", "headers"),
    ],
)
async def test_a_preflight_for_what_the_api_does_not_allow_is_a_400(
    client: httpx.AsyncClient, method: str, headers: str, refused: str
) -> None:
    response = await client.options(
        "/user/payment/balance", headers=preflight(ALLOWED, method, headers)
    )

    assert_error(response, 400)
    message = response.json()["message"]
    assert f"Disallowed CORS {refused}" in message
    assert "GET, POST, PUT, DELETE" in message and "Authorization, Content-Type" in message
    assert cors_headers(response) == {}


# --- actual requests ---------------------------------------------------------------------------


def assert_readable_by(response: httpx.Response, origin: str) -> None:
    """What lets the page on `origin` read the response and its request id."""
    assert response.headers["access-control-allow-origin"] == origin
    assert listed(response.headers["access-control-expose-headers"]) == {
        "x-api-call-id",
        "retry-after",
    }
    assert "origin" in listed(response.headers["vary"])
    assert response.headers["x-api-call-id"]


async def test_an_allowed_origin_reads_a_balance(client: httpx.AsyncClient, world: World) -> None:
    user = await world.user()

    response = await client.get("/user/payment/balance", headers=actual(ALLOWED, user.token))

    assert response.status_code == 200
    assert response.json()["map_id"] == user.id
    assert response.json()["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert_readable_by(response, ALLOWED)


async def test_an_allowed_origin_reads_errors_too(client: httpx.AsyncClient, world: World) -> None:
    user = await world.user()
    responses = {
        401: await client.get("/user/payment/balance", headers=actual(ALLOWED)),
        403: await client.get(
            f"/users/{user.id}/payment/balance", headers=actual(ALLOWED, user.token)
        ),
        404: await client.get("/no/such/path", headers=actual(ALLOWED, user.token)),
    }
    # A hot path, served before FastAPI's router.
    hot = await client.post("/api-calls/authorize", json={}, headers=actual(ALLOWED))

    for status, response in [*responses.items(), (401, hot)]:
        assert_error(response, status)
        assert_readable_by(response, ALLOWED)


async def test_an_allowed_origin_reads_the_413_of_an_oversized_body(
    client: httpx.AsyncClient, app_settings: Settings, world: World
) -> None:
    user = await world.user()
    headers = {**actual(ALLOWED, user.token), "content-type": "application/json"}
    body = b"[" + b"0," * app_settings.max_body_bytes + b"0]"

    response = await client.put("/user/payment/subscriptions", content=body, headers=headers)

    assert_error(response, 413)
    assert_readable_by(response, ALLOWED)


async def test_an_allowed_origin_reads_a_500(
    app_settings: Settings, engine: AsyncEngine, catalog: Catalog, clock: Clock
) -> None:
    app = create_app(app_settings, engine=engine, catalog=catalog)

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    async with app_client(app, clock) as client:
        response = await client.get("/fails", headers=actual(ALLOWED))

    assert response.status_code == 500
    assert response.json()["error_code"] == "internal_error"
    assert_readable_by(response, ALLOWED)


async def test_another_origin_gets_no_cors_header(client: httpx.AsyncClient, world: World) -> None:
    """The server still answers (the browser is what withholds it from the page)."""
    user = await world.user()

    response = await client.get("/user/payment/balance", headers=actual(OTHER, user.token))
    refused = await client.get("/user/payment/balance", headers=actual(OTHER))

    assert response.status_code == 200 and response.json()["map_id"] == user.id
    assert cors_headers(response) == {}
    assert_error(refused, 401)
    assert cors_headers(refused) == {}
    # So that no cache hands these to a page on an allowed origin.
    assert listed(response.headers["vary"]) == listed(refused.headers["vary"]) == {"origin"}


async def test_an_answer_to_no_origin_says_it_varies_by_origin(client: httpx.AsyncClient) -> None:
    response = await client.get("/pricing/subscriptions")

    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert listed(response.headers["vary"]) == {"origin"}


# --- ZOOPAY_CORS_ORIGINS -----------------------------------------------------------------------


async def test_without_the_setting_there_is_no_cors_at_all(
    no_cors: httpx.AsyncClient, world: World
) -> None:
    user = await world.user()

    asked = await no_cors.options("/org/payment/balance", headers=preflight(ALLOWED, "GET"))
    # What a hot path answers to a method it does not serve is issue 8 part 4's to settle.
    hot = await no_cors.options("/api-calls/authorize", headers=preflight(ALLOWED, "POST"))
    response = await no_cors.get("/user/payment/balance", headers=actual(ALLOWED, user.token))

    assert_error(asked, 405, "method_not_allowed")
    assert cors_headers(asked) == {}
    codes = {404: "not_found", 405: "method_not_allowed"}
    assert hot.status_code in codes
    assert_error(hot, hot.status_code, codes[hot.status_code])
    assert cors_headers(hot) == {}
    assert response.status_code == 200 and cors_headers(response) == {}


async def test_any_origin_with_a_star(
    database_url: str, engine: AsyncEngine, catalog: Catalog, clock: Clock, world: World
) -> None:
    user = await world.user()
    settings = Settings(database_url=database_url, cors_origins=["*"])
    async with app_client(create_app(settings, engine=engine, catalog=catalog), clock) as client:
        asked = await client.options("/api-calls", headers=preflight(OTHER, "POST"))
        response = await client.get("/user/payment/balance", headers=actual(OTHER, user.token))

    assert asked.status_code == 200
    assert asked.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("", []),
        ("https://app.example.com", ["https://app.example.com"]),
        (" https://App.Example.com , http://127.0.0.1:3000 ", [ALLOWED, "http://127.0.0.1:3000"]),
        ('["https://app.example.com", "http://[::1]:8080"]', [ALLOWED, "http://[::1]:8080"]),
        ("https://app.example.com:443,http://a.test:80", [ALLOWED, "http://a.test"]),
        ("*", ["*"]),
    ],
)
def test_the_setting_reads_a_list_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]
) -> None:
    monkeypatch.setenv("ZOOPAY_CORS_ORIGINS", value)

    assert Settings().cors_origins == origins


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example.com/",  # a browser never sends the slash: it would never match
        "https://app.example.com/app",
        "app.example.com",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://app.example.com:99999",
        '["https://app.example.com"',
        "[1]",
    ],
)
def test_the_setting_refuses_what_is_not_an_origin(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ZOOPAY_CORS_ORIGINS", value)

    with pytest.raises(ValidationError, match="cors_origins"):
        Settings()
