"""The route class every router uses: JSON bodies parsed exactly, only JSON accepted."""

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter

from zoopay.api.deps import (
    AnyOrg,
    AnyUser,
    OrgCustomer,
    UserCustomer,
    authenticate_request,
    current_principal,
)
from zoopay.errors import BadRequest, UnsupportedMediaType, quoted

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _no_constants(name: str) -> object:
    raise BadRequest(f"{name} is not a number JSON allows")


def _exact_number(text: str) -> Decimal | int:
    # `405.0` is an integer to JSON Schema, so an integer field takes it. An exponent or a long
    # literal stays a Decimal, so that `1e999999` never becomes a huge int.
    number = Decimal(text)
    if len(text) <= 40 and "e" not in text.lower() and number == number.to_integral_value():
        return int(number)
    return number


def parse_json(body: bytes) -> Any:
    """JSON with every non-integer number as an exact Decimal, and no NaN or Infinity."""
    try:
        return json.loads(body, parse_float=_exact_number, parse_constant=_no_constants)
    # ValueError also covers bad UTF-8 and integers too long to convert; RecursionError, nesting
    # too deep to decode.
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


class ExactJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def require_json(body: bytes, content_type: str | None) -> None:
    # No content type is read as JSON: the kittycad SDK sends its bodies without one.
    if body and content_type and not is_json(content_type):
        raise UnsupportedMediaType(
            f"request bodies must be application/json, not {quoted(content_type)}"
        )


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return dependant.call is call or any(_depends_on(d, call) for d in dependant.dependencies)


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        authenticated = _depends_on(self.dependant, current_principal)

        async def exact_json_handler(request: Request) -> Response:
            request = ExactJsonRequest(request.scope, request.receive)
            if authenticated:
                # Before the body is read: an anonymous caller costs no parsing, and learns
                # nothing from a 400 or 413.
                await authenticate_request(request.scope)
            if request.method in _BODY_METHODS:
                # Read (and size-check) the body before FastAPI would turn any failure into a 400.
                body = await request.body()
                require_json(body, request.headers.get("content-type"))
                if body:
                    await request.json()
            return await handler(request)

        return exact_json_handler


def json_router(**kwargs: Any) -> APIRouter:
    """A router whose bodies are exact JSON; a body without a content type is read as JSON,
    because the kittycad SDK sends its bodies without one."""
    return APIRouter(route_class=JsonRoute, strict_content_type=False, **kwargs)


@dataclass(frozen=True)
class Variant:
    """One registration of a route body that several routes share (a user's and an org's, a
    create and an update): `{who}` in the path and the name becomes `who`; `annotations` give
    parameters their dependency (e.g. whose customer), `values` fix parameters outright."""

    who: str
    doc: str
    annotations: Mapping[str, object] = field(default_factory=dict)
    values: Mapping[str, object] = field(default_factory=dict)


Endpoint = Callable[..., Awaitable[Any]]


def shared_route(
    router: APIRouter, method: str, path: str, name: str, *variants: Variant, **route: Any
) -> Callable[[Endpoint], Endpoint]:
    """Registers the decorated body once per variant, each its own operation (own name, own
    description), in the order given."""

    def register(endpoint: Endpoint) -> Endpoint:
        signature = inspect.signature(endpoint)
        for variant in variants:
            parameters = [
                parameter.replace(
                    annotation=variant.annotations.get(parameter.name, parameter.annotation)
                )
                for parameter in signature.parameters.values()
                if parameter.name not in variant.values
            ]
            handler = _bound(endpoint, variant.values)
            handler.__doc__ = variant.doc
            # FastAPI reads a route's parameters from its signature.
            handler.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
            router.add_api_route(
                path.replace("{who}", variant.who),
                handler,
                methods=[method],
                name=name.replace("{who}", variant.who),
                **route,
            )
        return endpoint

    return register


def _bound(endpoint: Endpoint, values: Mapping[str, object]) -> Endpoint:
    async def handler(**parameters: Any) -> Any:
        return await endpoint(**parameters, **values)

    return handler


@dataclass(frozen=True)
class Twins:
    """Where a user's route and its org twin differ: what their shared body's parameter `name`
    is given, by the dependency `user` in the one and `org` in the other; the org's part of the
    docstring is its paragraph that begins with `org_doc`."""

    name: str
    user: object
    org: object
    org_doc: str = "Org admin: "


# Whose money: the caller's own, and their org's for its admins.
CUSTOMERS = Twins("customer", UserCustomer, OrgCustomer)
# For staff: the account (a User or an Org) that the path's `{id}` names.
ANY_ACCOUNTS = Twins("account", AnyUser, AnyOrg, org_doc="Staff: ")


def for_user_and_org(
    router: APIRouter, route: str, twins: Twins = CUSTOMERS, **options: Any
) -> Callable[[Endpoint], Endpoint]:
    """Registers the body as `route` ("METHOD /{who}/...") for a user and, the same, for an
    org (its admins, or staff by `ANY_ACCOUNTS`), its `twins.name` parameter (by default
    `customer`, whose money) theirs: each operation named as the body with `who` replaced by
    user or org, and described by its part of the docstring (the org's is the paragraph from
    `twins.org_doc`)."""
    method, path = route.split(" ")

    def register(endpoint: Endpoint) -> Endpoint:
        doc = inspect.cleandoc(endpoint.__doc__ or "")
        user_doc, org_doc = doc.split("\n\n" + twins.org_doc)
        return shared_route(
            router,
            method,
            path,
            endpoint.__name__.replace("who", "{who}"),
            Variant("user", user_doc, annotations={twins.name: twins.user}),
            Variant("org", twins.org_doc + org_doc, annotations={twins.name: twins.org}),
            **options,
        )(endpoint)

    return register
