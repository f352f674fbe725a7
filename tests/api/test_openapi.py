"""The OpenAPI document says what the server does: Zoo's names, the statuses really answered,
money as it is really sent and accepted."""

import re
from decimal import Decimal
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.support.errors import assert_error
from tests.support.reference import sdk_operations

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


async def test_compatible_operations_have_the_sdk_names_and_tags(
    document: dict[str, Any],
) -> None:
    served = operations(document)
    compatible = {key: value for key, value in sdk_operations().items() if key in served}
    assert len(compatible) >= 28, sorted(compatible)
    for key, (tag, name) in compatible.items():
        assert (served[key]["tags"], served[key]["operationId"]) == ([tag], name), key


async def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for operation in operations(document).values()]
    assert len(ids) == len(set(ids))


async def test_no_operation_declares_a_status_never_sent(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for key, operation in operations(document).items():
        assert "422" not in operation["responses"], key
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, key


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        # A token (and so the database: 503), staff only, a path id, a body.
        ("PUT", "/users/{id}/payment/balance", {200, 400, 401, 403, 404, 413, 415, 503}),
        # A token from a user (a service token is a 403), a query flag.
        ("GET", "/user/payment/balance", {200, 400, 401, 403, 503}),
        # Org admin: not in an org is a 404, a member a 403; a body; price and plan rules.
        (
            "POST",
            "/org/payment/subscriptions",
            {200, 400, 401, 402, 403, 404, 409, 413, 415, 503},
        ),
        # No token at all.
        ("GET", "/pricing/subscriptions", {200}),
    ],
)
async def test_statuses_follow_from_what_an_operation_depends_on(
    document: dict[str, Any], method: str, path: str, statuses: set[int]
) -> None:
    declared = operations(document)[(method, path)]["responses"]
    assert {int(status) for status in declared} == statuses


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def property_schema(document: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    schema = resolve(document, document["components"]["schemas"][model]["properties"][field])
    return {**document, **schema}  # keeps components for any $ref inside


async def test_money_is_sent_as_a_decimal_string(
    client: httpx.AsyncClient, document: dict[str, Any], world: Any
) -> None:
    person = await world.user()
    body = (await client.get("/user/payment/balance", headers=person.headers)).json()
    schema = property_schema(document, "CustomerBalance", "total_due")
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(body["total_due"])
    assert validator.is_valid(body["monthly_api_credits_remaining_monetary_value"])
    for sent_never in (19.0, "19", "19.1", "1e3", "19.0000001"):
        assert not validator.is_valid(sent_never), sent_never


ACCEPTED = [0, 19, "19", "19.00", "0.000001", "1000000000", "1000000000.000000", "007.5"]
REFUSED = ["-1", "1.0000001", "1000000000.000001", "1e3", " 5", "+5", "", "1.", 1000000001]


@pytest.mark.parametrize("value", ACCEPTED + REFUSED)
async def test_accepted_amounts_are_exactly_what_the_schema_allows(
    client: httpx.AsyncClient, document: dict[str, Any], world: Any, value: object
) -> None:
    """The request schema of an amount and the server agree on every value."""
    staff, target = await world.user(staff=True), await world.user()
    operation = document["paths"]["/users/{id}/payment/balance"]["put"]
    model = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
    field = model["properties"]["stable_api_credits_remaining_monetary_value"]
    valid = jsonschema_rs.validator_for({**document, **field}).is_valid(value)
    response = await client.put(
        f"/users/{target.id}/payment/balance",
        headers=staff.headers,
        json={"stable_api_credits_remaining_monetary_value": value},
    )
    assert valid == (value in ACCEPTED)
    assert response.status_code == (200 if valid else 400), response.text
    if valid:
        sent = response.json()["stable_api_credits_remaining_monetary_value"]
        assert re.fullmatch(r"[0-9]+\.[0-9]{2,6}", sent)
        assert Decimal(sent) == Decimal(str(value))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        # Two routes share the path: the router alone would name only the first one's method.
        ("OPTIONS", "/org", "DELETE, GET, POST, PUT"),
        ("DELETE", "/org/members", "GET, POST"),
        # Hot paths (routes ahead of FastAPI's; /api-calls has a FastAPI GET beside the hot
        # POST), and a path with an id in it.
        ("TRACE", "/user/payment/balance", "GET"),
        ("PUT", "/api-calls", "GET, POST"),
        ("GET", "/api-calls/authorize", "POST"),
        ("PATCH", "/users/someone@example.com/payment/balance", "GET, PUT"),
    ],
)
async def test_a_wrong_method_is_405_naming_every_method_of_the_path(
    client: httpx.AsyncClient, world: Any, method: str, path: str, allowed: str
) -> None:
    person = await world.user()
    response = await client.request(method, path, headers=person.headers)
    message = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed
    assert method in message


async def test_an_unknown_path_is_still_404(client: httpx.AsyncClient, world: Any) -> None:
    person = await world.user()
    response = await client.get("/user/payment/nothing-here", headers=person.headers)
    assert_error(response, 404, "not_found")
    assert "allow" not in response.headers
