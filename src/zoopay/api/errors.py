"""Every error leaves as `{"error_code", "message", "request_id"}`, Zoo's error shape."""

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from zoopay.errors import QUOTE_LIMIT, ZoopayError, quoted
from zoopay.wire import Error

log = logging.getLogger("zoopay")

_HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "service_unavailable",
}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(
    status_code: int, error_code: str, message: str, request_id: str
) -> JSONResponse:
    body = Error(error_code=error_code, message=message, request_id=request_id)
    return JSONResponse(body.model_dump(), status_code=status_code)


async def _zoopay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZoopayError)
    response = error_response(exc.status_code, exc.error_code, exc.message, request_id_of(request))
    response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        400, "bad_request", describe_validation(exc.errors()), request_id_of(request)
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    allowed = allowed_methods(request)
    if exc.status_code in (404, 405) and allowed and request.method not in allowed:
        # The path exists with other methods: 405, naming them all (the router would name only
        # those of the first route on the path, and a hot path none).
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        response = error_response(405, "method_not_allowed", message, request_id_of(request))
        response.headers["allow"] = ", ".join(allowed)
        return response
    code = _HTTP_ERROR_CODES.get(exc.status_code, "error")
    response = error_response(exc.status_code, code, str(exc.detail), request_id_of(request))
    response.headers.update(exc.headers or {})
    return response


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
