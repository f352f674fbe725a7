"""Hot paths: the endpoints a product calls on every one of its own API requests, served
without FastAPI's per-request machinery (a scan of every route, dependency solving, response
re-validation) but with the same models, rules, authentication and error shape.

Each is declared once, as a `HotRoute`: the declaration both serves the endpoint and puts it
in the OpenAPI document. Measured in bench/RESULTS.md.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from zoopay.accounts.service import Principal
from zoopay.api.deps import authenticate_request, query_flag
from zoopay.api.errors import describe_validation
from zoopay.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_response
from zoopay.api.routing import parse_json, require_json
from zoopay.catalog.service import Catalog
from zoopay.errors import BadRequest, ZoopayError
from zoopay.wire import Error

JSON_HEADERS = [(b"content-type", b"application/json")]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HotRequest:
    request_id: str
    principal: Principal
    body: bytes
    query: dict[str, list[str]]
    state: State

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.state.engine
        return engine

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.state.catalog
        return catalog

    def now(self) -> datetime:
        now: datetime = self.state.clock()
        return now

    def parse(self, model: type[M]) -> M:
        if not self.body:
            raise BadRequest("a JSON request body is required")
        return model.model_validate(parse_json(self.body))

    def flag(self, name: str, default: bool) -> bool:
        values = self.query.get(name)
        return default if values is None else query_flag(name, values[-1])


# A handler answers (status, JSON body).
Handler = Callable[[HotRequest], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True)
class HotRoute:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    status: int = 200
    tag: str = "api-calls"
    errors: dict[int, str] = field(default_factory=dict)
    # Other successes, with the same response model: status -> what it means.
    also: dict[int, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


class HotPaths:
    """ASGI middleware that serves the hot routes and hands every other request on."""

    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute]) -> None:
        self.app = app
        self.routes = {(route.method, route.path): route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope.get("method", ""), scope.get("path", "")))
        if scope["type"] != "http" or route is None:
            await self.app(scope, receive, send)
            return
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body = await route.handler(await _hot_request(scope, receive))
        except ZoopayError as exc:
            status, body = exc.status_code, _error(scope, exc.error_code, exc.message)
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        except ValidationError as exc:
            status, body = 400, _error(scope, "bad_request", describe_validation(exc.errors()))
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _hot_request(scope: Scope, receive: Receive) -> HotRequest:
    headers = dict(scope["headers"])
    state: State = scope["app"].state
    principal = await authenticate_request(scope)
    body = await _read_body(receive) if scope["method"] != "GET" else b""
    require_json(body, headers.get(b"content-type", b"").decode("latin-1"))
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    request_id = str(scope.get("state", {}).get("request_id", ""))
    return HotRequest(request_id, principal, body, query, state)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error(scope: Scope, code: str, message: str) -> bytes:
    request_id = str(scope.get("state", {}).get("request_id", ""))
    return Error(error_code=code, message=message, request_id=request_id).model_dump_json().encode()


def hot_openapi(document: dict[str, Any], routes: Sequence[HotRoute]) -> dict[str, Any]:
    """Add the hot routes to an OpenAPI document built by FastAPI."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for route in routes:
        operation: dict[str, Any] = {
            "tags": [route.tag],
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "security": [{"HTTPBearer": []}],
            "responses": {
                str(route.status): _response("Success", route.response, schemas),
                **{
                    str(status): _response(text, route.response, schemas)
                    for status, text in route.also.items()
                },
                **{
                    str(status): error_response(status, route.errors.get(status))
                    for status in sorted(_error_statuses(route))
                },
            },
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(route.body, schemas, "validation")}
                },
            }
        if route.query:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": text,
                    "schema": {"type": "boolean", "default": True},
                }
                for name, text in route.query.items()
            ]
        document.setdefault("paths", {}).setdefault(route.path, {})[route.method.lower()] = (
            operation
        )
    return document


def _error_statuses(route: HotRoute) -> set[int]:
    """Every hot route takes a token; what else it can refuse follows from what it reads."""
    statuses = set(route.errors) | AUTH_ERRORS
    if route.body is not None:
        statuses |= BODY_ERRORS
    if route.query:
        statuses.add(400)
    return statuses


def _response(description: str, model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _schema_ref(model, schemas)}},
    }


def _schema_ref(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: Literal["validation", "serialization"] = "serialization",
) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}
