"""Every error leaves as `{"error_code", "message", "request_id"}`, Zoo's error shape."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from zoopay.errors import QUOTE_LIMIT, ZoopayError, quoted

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


class Error(BaseModel):
    """Error information from a response."""

    error_code: str | None = None
    message: str
    request_id: str


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
    code = _HTTP_ERROR_CODES.get(exc.status_code, "error")
    response = error_response(exc.status_code, code, str(exc.detail), request_id_of(request))
    response.headers.update(exc.headers or {})
    return response


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


UNAVAILABLE_RESPONSE = {
    "description": "The database is not answering in time (or, for reports, too many wait):"
    " retry after `Retry-After` seconds",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def declare_unavailable(document: dict[str, Any]) -> dict[str, Any]:
    """Every authenticated operation may answer 503: say so in the OpenAPI document."""
    document.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "Error", Error.model_json_schema()
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            # An operation without a token (the catalog, the probes) touches no database, or,
            # like /readyz, declares its own 503.
            if operation.get("security"):
                operation.setdefault("responses", {}).setdefault("503", UNAVAILABLE_RESPONSE)
    return document


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ZoopayError, _zoopay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
