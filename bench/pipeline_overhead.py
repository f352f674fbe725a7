"""What the request pipeline alone costs a hot path: the app's hot handlers are replaced by one
that answers at once, and the process's CPU time per request is taken in-process (token check,
body read, every middleware, routing, the response) over 5 x 5,000 sequential requests. It is
the part the pipeline change touches, and, with no database or load generator in it, it is stable
on a busy machine. Run it in each build's venv (the old build's handlers are patched in its
`HotPaths` middleware, the new one's on its `HotRoute`s):

`BUILD/.venv/bin/python bench/pipeline_overhead.py DATABASE_URL SERVICE_TOKEN`
(any migrated zoopay database and a service token in it, e.g. made by bench/run.py's `seed`).
"""

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from pipeline_cpu import _call, _scope

from zoopay.app import create_app
from zoopay.config import Settings


async def _answer_at_once(request: Any) -> tuple[int, bytes]:
    return 200, b'{"ok":true}'


def _patch(app: Any) -> str:
    layer = app.middleware_stack
    while layer is not None:
        routes = getattr(layer, "routes", None)
        if isinstance(routes, dict):  # the old build's HotPaths middleware
            for key, route in list(routes.items()):
                routes[key] = dataclasses.replace(route, handler=_answer_at_once)
            return "old (middleware)"
        layer = getattr(layer, "app", None)
    for route in app.router.routes:
        if hasattr(route, "handler"):
            route.handler = _answer_at_once
    return "new (router)"


async def main(url: str, token: str) -> None:
    app = create_app(Settings(database_url=url))
    async with app.router.lifespan_context(app):
        await _call(app, _scope("GET", "/ping", token), b"")  # builds the middleware stack
        build = _patch(app)
        for method, path, body in (
            ("GET", "/user/payment/balance", b""),
            ("POST", "/api-calls", b'{"a":1}'),
        ):
            for _ in range(500):
                assert await _call(app, _scope(method, path, token), body) == 200
            runs = []
            for _ in range(5):
                started = time.process_time()
                for _ in range(5000):
                    await _call(app, _scope(method, path, token), body)
                runs.append(1e6 * (time.process_time() - started) / 5000)
            text = " ".join(f"{r:.1f}" for r in sorted(runs))
            print(f"{build} {method} {path}: µs CPU per request {text}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
