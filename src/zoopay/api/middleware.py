"""ASGI middleware: a request id on every response, a cap on body size, and the last word on
unexpected errors (in the API's error shape, with the id, and nothing else leaked): a database
that is down or hung is a 503 to retry, anything else a 500."""

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoopay.api.errors import domain_error_response
from zoopay.db.engine import is_unavailable
from zoopay.errors import PayloadTooLarge, ServiceUnavailable, ZoopayError

log = logging.getLogger("zoopay")

REQUEST_ID_HEADER = b"x-api-call-id"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER]
                message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, self._capped(scope, receive), send_with_id)
        except Exception as exc:
            if started:
                log.exception("error after the response began, in request %s", request_id)
            elif is_unavailable(exc):
                # Every route and hot path passes here: the one place a database fault is a 503.
                log.warning("database unavailable in request %s: %r", request_id, exc)
                await domain_error_response(UNAVAILABLE, request_id)(scope, receive, send_with_id)
            else:
                log.exception("unhandled error in request %s", request_id)
                error = INTERNAL_ERROR
                await domain_error_response(error, request_id)(scope, receive, send_with_id)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _capped(self, scope: Scope, receive: Receive) -> Receive:
        # Checked when the body is first read, not before: a route decides who is asking first,
        # so that a caller without a token gets its 401 whatever it sent.
        received = 0 if self._declared_length(scope) <= self.max_body_bytes else None

        async def capped_receive() -> Message:
            nonlocal received
            if received is None:
                raise PayloadTooLarge(self._too_large())
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise PayloadTooLarge(self._too_large())
            return message

        return capped_receive


UNAVAILABLE = ServiceUnavailable("the database is not answering in time: try again shortly")
INTERNAL_ERROR = ZoopayError("internal error; quote the request id when reporting it")
