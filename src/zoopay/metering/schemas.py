"""Wire models of metering: `ApiCallWithPrice` exactly as kittycad 1.2.0 reads it, and the
extension models of reporting and authorization."""

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field, StrictInt, StringConstraints

from zoopay.instants import Instant
from zoopay.money import Amount, Money, from_micros
from zoopay.records import same_named
from zoopay.wire import Error, StoredWireModel, WireModel

if TYPE_CHECKING:  # the service reads reports in these models: imported for types only
    from zoopay.metering.service import CallRecord

MAX_BATCH = 1000


class Method(enum.StrEnum):
    OPTIONS = "OPTIONS"
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    HEAD = "HEAD"
    TRACE = "TRACE"
    CONNECT = "CONNECT"
    PATCH = "PATCH"
    EXTENSION = "EXTENSION"


class ApiCallReport(StoredWireModel):
    """One API call a product made for a user, to be priced and drawn from credits."""

    id: UUID = Field(description="The call's id; reporting it again is idempotent")
    user_id: UUID
    org_id: UUID | None = Field(
        default=None, description="The org to charge; by default the user's org, if any"
    )
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    method: Method
    status_code: Annotated[StrictInt, Field(ge=100, le=599)] | None = None
    started_at: Instant
    completed_at: Instant = Field(description="At most 24 hours after started_at")
    price: Amount | None = Field(
        default=None, description="Overrides the price list; at most 10,000 USD"
    )
    ip_address: Annotated[str, StringConstraints(max_length=64)] = ""
    user_agent: Annotated[str, StringConstraints(max_length=512)] = ""
    origin: Annotated[str, StringConstraints(max_length=512)] | None = None
    token: UUID | None = Field(
        default=None, description="Id of the API token the call was made with, if known"
    )


class ApiCallBatch(WireModel):
    """Up to 1,000 calls, each read as an `ApiCallReport` on its own: one that is not valid
    gets its error in the results and the others are recorded, so any item is accepted here."""

    calls: Annotated[
        list[Any],
        Field(max_length=MAX_BATCH, description="`ApiCallReport` objects, each checked alone"),
    ]


class ApiCallWithPrice(BaseModel):
    """An API call with its price, field for field kittycad 1.2.0's model."""

    completed_at: datetime | None = None
    created_at: datetime
    duration: int | None = None
    email: str | None = None
    endpoint: str | None = None
    id: str
    ip_address: str = ""
    method: Method
    minutes: int | None = None
    org_id: str | None = None
    origin: str | None = None
    price: Money | None = None
    request_body: str | None = None
    request_query_params: str | None = None
    response_body: str | None = None
    started_at: datetime | None = None
    status_code: int | None = None
    stripe_invoice_item_id: str | None = None
    token: str
    updated_at: datetime
    user_agent: str
    user_id: str

    @classmethod
    def of(cls, call: "CallRecord") -> "ApiCallWithPrice":
        return cls(
            **{**same_named(call, cls), "method": Method(call.method)},
            duration=call.duration_ms,
            price=from_micros(call.price_micros),
            updated_at=call.created_at,
        )


class ApiCallWithPriceResultsPage(BaseModel):
    items: list[ApiCallWithPrice]
    next_page: str | None = None


class ApiCallResult(BaseModel):
    """The outcome of one call of a batch: its price if recorded, or why it was refused."""

    id: str | None = Field(description="The call's id, when the call had a valid one")
    status: int = Field(description="201 recorded, 200 recorded before (same content), or 4xx")
    price: Money | None = Field(default=None, description="What it cost, when recorded")
    error: Error | None = None


class ApiCallBatchResults(BaseModel):
    results: list[ApiCallResult]


class AuthorizationRequest(WireModel):
    user_id: UUID
    org_id: UUID | None = None
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class Authorization(BaseModel):
    """May the customer make another call? Sent with 200; a refusal is a 402 error."""

    allowed: bool
    customer_kind: str
    customer_id: str
    monthly_api_credits_remaining_monetary_value: Money
    stable_api_credits_remaining_monetary_value: Money
    total_due: Money
    price_per_call: Money
    price_per_minute: Money
