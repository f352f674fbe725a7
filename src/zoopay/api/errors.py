"""Every error leaves as `{"error_code", "message", "request_id"}`, Zoo's error shape."""

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from zoopay.errors import QUOTE_LIMIT, BadRequest, MethodNotAllowed, ZoopayError, quoted
from zoopay.wire import ERROR_CODES, error_body

log = logging.getLogger("zoopay")


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(
    status_code: int,
    error_code: str | None,
    message: str,
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Every error response: a domain error, a router's 404 or 405, a refused preflight, the
    request context's 500 and 503."""
    body = error_body(error_code, message, request_id)
    return Response(body, status_code, headers=headers, media_type="application/json")


def domain_error_response(exc: ZoopayError, request_id: str) -> Response:
    return error_response(exc.status_code, exc.error_code, exc.message, request_id, exc.headers)


async def _zoopay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZoopayError)
    return domain_error_response(exc, request_id_of(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = BadRequest(describe_validation(exc.errors()))
    return domain_error_response(error, request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    allowed = allowed_methods(request)
    if exc.status_code in (404, 405) and allowed and request.method not in allowed:
        # The path exists with other methods: 405, naming them all (the router would name only
        # those of the first route on the path).
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        error = MethodNotAllowed(message)
        headers = {"allow": ", ".join(allowed)}
        return error_response(405, error.error_code, message, request_id_of(request), headers)
    code = ERROR_CODES.get(exc.status_code, "error")
    return error_response(
        exc.status_code, code, str(exc.detail), request_id_of(request), exc.headers
    )


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path: the server's own truth."""
    paths: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "documented_paths", None
    )
    if paths is None:
        # Fixed paths first: `/api-calls/batch` is not `/api-calls/{id}`.
        documented = sorted(request.app.openapi()["paths"].items(), key=lambda item: "{" in item[0])
        paths = [
            (compile_path(path)[0], sorted(method.upper() for method in operations))
            for path, operations in documented
        ]
        request.app.state.documented_paths = paths
    for pattern, methods in paths:
        if pattern.match(request.url.path):
            return methods
    return []


_MOST_PROBLEMS = 5


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable line per problem, for the first few: where it is and what is wrong. Field
    names come from the client, so they are cut like any other input they quote."""
    problems = []
    for err in errors[:_MOST_PROBLEMS]:
        location = ".".join(_part(part) for part in err.get("loc", ()) if part != "body")
        message = str(err.get("msg", "is invalid"))
        if err.get("type") == "extra_forbidden":
            message = "is not a known field"
        problems.append(f"{location or 'body'}: {message.removeprefix('Value error, ')}")
    more = len(errors) - _MOST_PROBLEMS
    return "invalid request: " + "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _part(part: object) -> str:
    text = str(part)
    return text if len(text) <= QUOTE_LIMIT else quoted(text)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ZoopayError, _zoopay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
