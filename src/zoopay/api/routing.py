"""The route class every router uses: JSON bodies parsed exactly, only JSON accepted."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute, APIRouter

from zoopay.errors import BadRequest, UnsupportedMediaType

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


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_json_handler(request: Request) -> Response:
            request = ExactJsonRequest(request.scope, request.receive)
            if request.method in _BODY_METHODS:
                # Read (and size-check) the body before FastAPI would turn any failure into a 400.
                body = await request.body()
                content_type = request.headers.get("content-type")
                # No content type is read as JSON: the kittycad SDK sends its bodies without one.
                if body and content_type and not is_json(content_type):
                    raise UnsupportedMediaType(
                        f"request bodies must be application/json, not {content_type}"
                    )
                if body:
                    await request.json()
            return await handler(request)

        return exact_json_handler


def json_router(**kwargs: Any) -> APIRouter:
    """A router whose bodies are exact JSON; a body without a content type is read as JSON,
    because the kittycad SDK sends its bodies without one."""
    return APIRouter(route_class=JsonRoute, strict_content_type=False, **kwargs)
