"""The floor of the hot paths: a bare ASGI app that does only what no implementation can skip
(read the request's body, parse its JSON, answer a small JSON body), run by the same HTTP server
with the same workers as zoopay. bench/run.py measures it in the same run as the hot paths:
what lies between its figure and theirs is zoopay's own work.

`python bench/floor.py PORT WORKERS [uvicorn|granian]`
"""

import json
import sys
from typing import Any

ANSWER = b'{"id":"00000000-0000-4000-8000-000000000000","price":"0.001","status_code":201}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to start or stop
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if body:
        json.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = sys.argv[3] if len(sys.argv) > 3 else "uvicorn"
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian("floor:app", interface=Interfaces.ASGI, port=port, workers=workers).serve()
        return
    import uvicorn

    # As `zoopay serve` runs uvicorn: no access log, no proxy headers.
    uvicorn.run(
        "floor:app",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
