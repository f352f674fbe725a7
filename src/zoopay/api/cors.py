"""CORS, so that a browser front-end on an allowed origin (ZOOPAY_CORS_ORIGINS) can call the API
with a user's token, as it can call Zoo's. Starlette's CORSMiddleware does the work, in two
layers placed by app.py:

- `CorsPreflight`, outside the hot paths and inside the request context, answers every
  preflight on every path (so the answer carries a request id, like every response);
- `CorsHeaders`, outermost, adds `Access-Control-Allow-Origin` and `-Expose-Headers` to every
  other response to an allowed origin, including the 500 and 503 the request context answers
  itself.

A request from any other origin gets no CORS header at all (only `Vary: Origin`); its
preflight is refused with a 403 in the error shape.
"""

from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoopay.api.errors import domain_error_response, request_id_of
from zoopay.api.middleware import REQUEST_ID_HEADER
from zoopay.errors import BadRequest, Forbidden

CORS_METHODS = ("GET", "POST", "PUT", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type")


class _Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            # A page reads only safelisted headers unless told: the request id, and when to
            # retry a 503.
            expose_headers=(REQUEST_ID_HEADER.decode(), "retry-after"),
            # Chrome asks before a public page calls a private address; an origin the operator
            # listed may (it must still hold a bearer token: no cookie is ever sent).
            allow_private_network=True,
        )


# Both layers look at every request: they read the raw header list (names are lower case in
# ASGI) rather than build a Headers per request.


def _is_preflight(scope: Scope) -> bool:
    if scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


def _origin(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            origin: str = value.decode("latin-1")
            return origin
    return None


class CorsPreflight(_Cors):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        response = self._answer(Request(scope))
        await response(scope, receive, send)

    def _answer(self, request: Request) -> Response:
        origin = request.headers["origin"]
        if not self.is_allowed_origin(origin):
            message = f"the origin {origin} may not call this API from a browser"
            return domain_error_response(Forbidden(message), request_id_of(request))
        response = self.preflight_response(request_headers=request.headers)
        if response.status_code == 200:
            return response
        # Starlette says what was refused ("Disallowed CORS method, headers"); say what may pass.
        refused = bytes(response.body).decode()
        message = (
            f"{refused}: the allowed methods are {', '.join(CORS_METHODS)}, "
            f"the allowed headers {', '.join(CORS_HEADERS)}"
        )
        return domain_error_response(BadRequest(message), request_id_of(request))


class CorsHeaders(_Cors):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        if origin is not None and self.is_allowed_origin(origin):
            await self.simple_response(scope, receive, send, request_headers=Headers(scope=scope))
        else:
            await self.app(scope, receive, _varying_by_origin(send))


def _varying_by_origin(send: Send) -> Send:
    """Answers without CORS headers still say they depend on Origin, so that no cache hands one
    to a page on an allowed origin."""

    async def send_varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).add_vary_header("Origin")
        await send(message)

    return send_varying
