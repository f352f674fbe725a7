"""Every error leaves as `{"error_code", "message", "request_id"}`, Zoo's error shape."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from zoopay.errors import ZoopayError

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
    return error_response(exc.status_code, exc.error_code, exc.message, request_id_of(request))


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


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable line per problem: where it is and what is wrong."""
    problems = []
    for err in errors:
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        message = str(err.get("msg", "is invalid"))
        if err.get("type") == "extra_forbidden":
            message = "is not a known field"
        problems.append(f"{location or 'body'}: {message.removeprefix('Value error, ')}")
    return "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ZoopayError, _zoopay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)


def error_responses(errors: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route answers, for its OpenAPI `responses`."""
    return {status: {"model": Error, "description": text} for status, text in errors.items()}
