"""What every domain shares on the wire: the bases of the wire models, the error body, ids."""

import uuid
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

from zoopay.errors import BadRequest, quoted


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


# Ids as the services accept them; the OpenAPI document states the same pattern.
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def parse_uuid(value: str, what: str) -> str:
    """`value` as a canonical UUID; a 400 naming `what` if it is none."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{quoted(value)} is not a valid {what} id (a UUID)") from None
