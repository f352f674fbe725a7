"""What every domain shares on the wire: the bases of the wire models, the error body, ids."""

import uuid
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

from zoopay.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ZoopayError,
    quoted,
)


class WireModel(BaseModel):
    """Unknown fields are refused: a mistyped field must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


_NO_NUL = r"^[^\x00]*$"


def _declare_no_nul(schema: dict[str, Any]) -> None:
    """Say in the JSON Schema what `_no_nul_characters` refuses."""
    for field in schema.get("properties", {}).values():
        for option in [field, *field.get("anyOf", [])]:
            if option.get("type") == "string" and "pattern" not in option:
                option["pattern"] = _NO_NUL


class StoredWireModel(WireModel):
    """A request whose text is stored: NUL is refused here, since PostgreSQL text cannot hold
    it (SQLite could, so without this the two backends would disagree)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_declare_no_nul)

    @model_validator(mode="after")
    def _no_nul_characters(self) -> Self:
        for field, value in self:
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{field} must not contain NUL characters")
        return self


class Error(BaseModel):
    """Error information from a response."""

    error_code: str | None = None
    message: str
    request_id: str


# The one table from error class to status and code: the API answers by it (a domain error, a
# 404 or 405 from the router, the 500 and 503 of the request context), and the tests check by it.
ERROR_CLASSES: dict[int, type[ZoopayError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        PaymentRequired,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        ZoopayError,
        ServiceUnavailable,
    )
}
ERROR_CODES: dict[int, str] = {status: cls.error_code for status, cls in ERROR_CLASSES.items()}


def error_body(error_code: str | None, message: str, request_id: str) -> bytes:
    """The one builder of an error response's body, Zoo's error shape."""
    error = Error(error_code=error_code, message=message, request_id=request_id)
    return error.model_dump_json().encode()


# Ids as the services accept them; the OpenAPI document states the same pattern.
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def parse_uuid(value: str, what: str) -> str:
    """`value` as a canonical UUID; a 400 naming `what` if it is none."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{quoted(value)} is not a valid {what} id (a UUID)") from None
