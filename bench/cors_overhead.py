"""What the two CORS layers (src/zoopay/api/cors.py) add to a request when ZOOPAY_CORS_ORIGINS
is set: the request context around an app that answers `{}`, with and without them, called in
this process (no network, no database). Best of 5 rounds of 20,000 requests each.

    .venv/bin/python bench/cors_overhead.py

Unset (the default), the layers are not installed and cost nothing.
"""

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoopay.api.cors import CorsHeaders, CorsPreflight
from zoopay.api.middleware import RequestContextMiddleware

ALLOWED = "https://app.example.com"
ROUNDS, REQUESTS = 5, 20_000


async def answer_empty(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def stack(*, cors: bool) -> ASGIApp:
    """The order app.py builds."""
    app: ASGIApp = answer_empty
    if cors:
        app = CorsPreflight(app, origins=[ALLOWED])
    app = RequestContextMiddleware(app, max_body_bytes=1 << 20)
    if cors:
        app = CorsHeaders(app, origins=[ALLOWED])
    return app


async def microseconds_per_request(app: ASGIApp, origin: bytes | None) -> float:
    headers = [(b"host", b"zoopay"), (b"authorization", b"Bearer token")]
    headers += [(b"origin", origin)] if origin else []
    scope = {"type": "http", "method": "GET", "path": "/user/payment/balance", "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            await app({**scope, "query_string": b""}, receive, send)
        best = min(best, (time.perf_counter() - started) / REQUESTS * 1e6)
    return best


async def main() -> None:
    without = await microseconds_per_request(stack(cors=False), None)
    print(f"without CORS layers: {without:5.1f} µs/request")
    for name, origin in (
        ("no Origin", None),
        ("allowed Origin", ALLOWED.encode()),
        ("other Origin", b"https://other.example.com"),
    ):
        with_cors = await microseconds_per_request(stack(cors=True), origin)
        print(f"with, {name + ':':15} {with_cors:5.1f} µs/request (+{with_cors - without:.1f})")


if __name__ == "__main__":
    asyncio.run(main())
