"""The request pipeline as an attacker meets it: who asks is decided before a body is read, no
redirect is built from a Host header, and error messages quote only a prefix of the input."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from tests.conftest import World
from tests.support.database import dump
from tests.support.errors import assert_error
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.errors import ZoopayError
from zoopay.wire import ERROR_CLASSES, ERROR_CODES

MIB = 1024 * 1024


def body_operations(settings: Settings, engine: AsyncEngine, catalog: Catalog) -> list[Any]:
    """Every operation of the OpenAPI document that takes a body and a token: routes and hot
    paths alike, so that one added later is covered without editing this test."""
    document = create_app(settings, engine=engine, catalog=catalog).openapi()
    return [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and operation.get("security")
    ]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"zoopay.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("zoopay.test", 80),
    }


@pytest.mark.parametrize("authorization", [None, b"Bearer zoo_not-a-token"], ids=["none", "bad"])
async def test_a_caller_without_a_good_token_gets_401_before_its_body_is_read(
    app_settings: Settings, engine: AsyncEngine, catalog: Catalog, authorization: bytes | None
) -> None:
    operations = body_operations(app_settings, engine, catalog)
    assert ("POST", "/api-calls") in operations and ("PUT", "/users/{id}/payment/balance") in (
        operations
    )
    app = create_app(app_settings, engine=engine, catalog=catalog)
    for method, template in operations:
        path = template.replace("{id}", str(uuid.uuid4())).replace("{user_id}", str(uuid.uuid4()))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"2000000")]
        if authorization is not None:
            headers.append((b"authorization", authorization))
        status, reads = await _call_counting_reads(app, _scope(method, path, headers))
        assert status == 401, (method, template, status)
        assert reads == 0, f"{method} {template} read its body before refusing the caller"


async def _call_counting_reads(app: Any, scope: dict[str, Any]) -> tuple[int, int]:
    """The status of a request, and how often the app asked for its body."""
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        # Were it parsed, this body would be a 400; were it read, a 413.
        return {"type": "http.request", "body": b"{" * 10, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]), reads


@pytest.mark.parametrize(
    ("label", "content", "content_type"),
    [
        ("over 1 MiB", b'{"a": "' + b"x" * MIB + b'"}', "application/json"),
        ("invalid JSON", b'{"name": ', "application/json"),
        ("not JSON", b"name=x", "text/plain"),
    ],
)
@pytest.mark.parametrize("path", ["/users/{id}/payment/balance", "/api-calls"])
async def test_over_http_a_bad_body_without_a_token_is_a_401(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    path: str,
    label: str,
    content: bytes,
    content_type: str,
) -> None:
    user = await world.user()
    before = await dump(engine)
    for headers in ({}, {"Authorization": "Bearer zoo_nope"}):
        response = await client.request(
            "PUT" if "{id}" in path else "POST",
            path.format(id=user.id),
            content=content,
            headers={**headers, "content-type": content_type},
        )
        assert_error(response, 401)
    assert await dump(engine) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/user/payment/balance/"),
        ("GET", "/org/payment/balance/"),
        ("GET", "/pricing/subscriptions/"),
        ("POST", "/api-calls/"),
        ("GET", "/healthz/"),
    ],
)
async def test_a_trailing_slash_is_a_404_and_never_a_redirect_to_the_host_asked_for(
    client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    user = await world.user()
    response = await client.request(
        method, path, headers={**user.headers, "Host": "evil.example"}, json={}
    )
    assert_error(response, 404)
    assert "location" not in response.headers
    assert "evil.example" not in response.text


LONG = "x" * 100_000
IN_URL = "x" * 10_000  # httpx refuses URLs over 64 KiB
MESSAGE_LIMIT = 400


async def test_error_messages_quote_only_a_prefix_of_the_input(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff, admin = await world.user(staff=True), await world.user()
    await world.org(admin)
    stable = "stable_api_credits_remaining_monetary_value"
    attempts = [
        ("PUT", f"/users/{staff.id}/payment/balance", staff, {LONG: 1}, {}),
        ("PUT", f"/users/{staff.id}/payment/balance", staff, {stable: LONG}, {}),
        ("PUT", f"/users/{staff.id}/payment/balance", staff, {stable: "-" + LONG}, {}),
        ("PUT", f"/users/{staff.id}/payment/balance", staff, {f"f{i}": 1 for i in range(5000)}, {}),
        ("PUT", f"/users/{staff.id}/payment/balance", staff, {stable: "1"}, {"ct": LONG}),
        ("GET", f"/users/{IN_URL}/payment/balance", staff, None, {}),
        ("GET", f"/users/{IN_URL}@example.com/payment/balance", staff, None, {}),
        ("GET", f"/orgs/{IN_URL}/payment/balance", staff, None, {}),
        ("GET", f"/api-calls/{IN_URL}", staff, None, {}),
        ("POST", "/org/members", admin, {"email": LONG + "@example.com", "role": "member"}, {}),
        ("POST", "/org/members", admin, {"email": LONG, "role": "member"}, {}),
        ("POST", "/org/members", admin, {"email": "a@example.com", "role": LONG}, {}),
        ("PUT", "/user/payment/subscriptions", admin, {"modeling_app": LONG}, {}),
        ("POST", "/org", staff, {"name": "A", "billing_email": LONG}, {}),
        ("GET", "/org/members", admin, None, {"page_token": IN_URL}),
        ("GET", "/user/payment/balance", admin, None, {"include_total_due": IN_URL}),
        ("POST", "/api-calls", staff, {"id": LONG}, {}),
        ("POST", "/api-calls/authorize", staff, {"user_id": LONG, "endpoint": "/x"}, {}),
    ]
    for method, path, who, body, extra in attempts:
        headers = dict(who.headers)
        params = None
        if "ct" in extra:
            headers["content-type"] = "application/" + extra["ct"]
        elif extra:
            params = extra
        response = await client.request(method, path, json=body, headers=headers, params=params)
        assert 400 <= response.status_code < 500, (path, response.text[:200])
        message = response.json()["message"]
        assert len(message) <= MESSAGE_LIMIT, (method, path[:40], message[:200], len(message))


async def test_the_openapi_document_declares_the_probes_and_the_503s(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert set(document["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert set(document["paths"]["/readyz"]["get"]["responses"]) >= {"200", "503"}
    # Operations that take no token but read the database: the readiness probe, and those whose
    # credential is in the request itself (a setup intent's client secret, Stripe's signature).
    credential_in_request = {
        "/readyz",
        "/processor/setup-intents/confirm",
        "/processor/stripe/webhook",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = "503" in operation["responses"]
            expected = bool(operation.get("security")) or path in credential_in_request
            assert declared == expected, (path, method)


def _error_classes(cls: type[ZoopayError]) -> list[type[ZoopayError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _error_classes(child))]


def test_every_error_class_is_in_the_one_table_of_statuses_and_codes() -> None:
    """One class per status in the table; a subclass may name its cause more exactly
    (`card_declined` is a 402), never answer another status."""
    for cls in _error_classes(ZoopayError):
        assert issubclass(cls, ERROR_CLASSES[cls.status_code]), cls
        if ERROR_CLASSES[cls.status_code] is cls:
            assert ERROR_CODES[cls.status_code] == cls.error_code
    assert set(ERROR_CODES.values()) == {cls.error_code for cls in ERROR_CLASSES.values()}


async def test_a_hot_path_error_is_answered_by_the_app_s_handlers_in_the_error_shape(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """The hot routes raise; the handlers every route has answer (one error body)."""
    user = await world.user()
    before = await dump(engine)
    response = await client.post("/api-calls", headers=user.headers, json={})
    assert "service token or staff" in assert_error(response, 403, "forbidden")
    response = await client.get(
        "/user/payment/balance", headers=user.headers, params={"include_total_due": "1"}
    )
    assert assert_error(response, 400, "bad_request") == "include_total_due must be true or false"
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert await dump(engine) == before
