"""Hot routes: the endpoints a product calls on every one of its own API requests. They are
routes of the app's router, ahead of the FastAPI ones, so that the errors, the 405s, the
OpenAPI document and the middleware of every route are theirs too; what they skip is FastAPI's
per-request machinery (dependency solving, response re-validation): each is a plain ASGI
endpoint that authenticates, reads and checks its body with the functions every route uses.

Each is declared once, as a `HotRoute`: the declaration both serves the endpoint and puts it
in the OpenAPI document (zoopay.api.openapi). Measured in bench/RESULTS.md.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from zoopay.accounts.service import Principal
from zoopay.api.deps import authenticate_request, query_flag
from zoopay.api.errors import describe_validation
from zoopay.api.routing import parse_json, require_json
from zoopay.catalog.service import Catalog
from zoopay.errors import BadRequest

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


class HotRoute(Route):
    """One method on one path, served by `handler`; the rest is what the OpenAPI document says
    of it."""

    def __init__(
        self,
        method: str,
        path: str,
        handler: Handler,
        summary: str,
        response: type[BaseModel],
        *,
        body: type[BaseModel] | None = None,
        status: int = 200,
        tag: str = "api-calls",
        errors: Mapping[int, str] | None = None,
        also: Mapping[int, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> None:
        # FastAPI's document generator reads only its own routes: openapi.declare_hot_routes
        # documents these.
        super().__init__(path, handler, name=handler.__name__, include_in_schema=False)
        # Served as ASGI, not through Starlette's request/response wrapper.
        self.app = self._serve
        # Exactly the method declared (Starlette would add HEAD to a GET, which no FastAPI
        # route answers): another is the router's 405, named with the path's methods.
        self.methods = {method}
        self.method = method
        self.handler = handler
        self.summary = summary
        self.response = response
        self.body = body
        self.status = status
        self.tag = tag
        self.errors = dict(errors or {})
        # Other successes, with the same response model: status -> what it means.
        self.also = dict(also or {})
        self.query = dict(query or {})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Errors are raised, not answered: the app's exception handlers answer them, as they do
        # for every route.
        try:
            status, body = await self.handler(await _hot_request(scope, receive))
        except ValidationError as exc:
            raise BadRequest(describe_validation(exc.errors())) from None
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _hot_request(scope: Scope, receive: Receive) -> HotRequest:
    state: State = scope["app"].state
    principal = await authenticate_request(scope)
    body = b""
    if scope["method"] != "GET":
        body = await _read_body(receive)
        require_json(body, _header(scope, b"content-type"))
    query_string: bytes = scope.get("query_string", b"")
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True) if query_string else {}
    request_id = str(scope["state"].get("request_id", ""))
    return HotRequest(request_id, principal, body, query, state)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
