from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.service import find_user
from zoopay.api.deps import (
    Conn,
    CurrentUser,
    OrgAdmin,
    StaffUser,
    UserInPath,
    require_metering,
)
from zoopay.api.errors import describe_validation
from zoopay.api.hotpath import HotRequest, HotRoute
from zoopay.api.openapi import errors
from zoopay.api.pagination import Page, PageRequest, results_page
from zoopay.api.routing import Twins, for_user_and_org, json_router
from zoopay.db.engine import reading
from zoopay.errors import BadRequest, Forbidden
from zoopay.metering.batcher import CallRecorder, commit_calls
from zoopay.metering.schemas import (
    ApiCallBatch,
    ApiCallBatchResults,
    ApiCallReport,
    ApiCallResult,
    ApiCallWithPrice,
    ApiCallWithPriceResultsPage,
    Authorization,
    AuthorizationRequest,
)
from zoopay.metering.service import (
    Outcome,
    Reported,
    get_call,
    list_calls,
    standing,
)
from zoopay.money import from_micros
from zoopay.wire import Error

router = json_router(tags=["api-calls"])


def _result(call_id: str | None, outcome: Outcome, request_id: str) -> ApiCallResult:
    if outcome.error is not None:
        error = outcome.error
        return ApiCallResult(
            id=call_id,
            status=outcome.status,
            error=Error(error_code=error.error_code, message=error.message, request_id=request_id),
        )
    assert outcome.call is not None
    price = from_micros(outcome.call.price_micros)
    # Built from values already checked: a thousand validations a batch were measurable.
    return ApiCallResult.model_construct(id=call_id, status=outcome.status, price=price, error=None)


@dataclass(frozen=True)
class CallScope:
    """The API calls a caller may see: a user's, an org's, or (staff) every one."""

    conn: AsyncConnection
    user_id: str | None = None
    org_id: str | None = None

    async def page(self, page: PageRequest) -> ApiCallWithPriceResultsPage:
        rows = await list_calls(
            self.conn, **page.window(), user_id=self.user_id, org_id=self.org_id
        )
        return results_page(ApiCallWithPriceResultsPage, rows, page, ApiCallWithPrice.of)

    async def get(self, call_id: UUID) -> ApiCallWithPrice:
        found = await get_call(
            self.conn, call_id=str(call_id), user_id=self.user_id, org_id=self.org_id
        )
        return ApiCallWithPrice.of(found)


async def user_calls(user: CurrentUser, conn: Conn) -> CallScope:
    return CallScope(conn, user_id=user.id)


async def org_calls(admin: OrgAdmin, conn: Conn) -> CallScope:
    return CallScope(conn, org_id=admin.org_id)


async def all_calls(staff: StaffUser, conn: Conn) -> CallScope:
    return CallScope(conn)


# Whose calls: the caller's own, and their org's for its admins.
CALLS = Twins(
    "calls", Annotated[CallScope, Depends(user_calls)], Annotated[CallScope, Depends(org_calls)]
)
AllCalls = Annotated[CallScope, Depends(all_calls)]


def _recorder(request: HotRequest) -> CallRecorder:
    recorder: CallRecorder = request.state.call_recorder
    return recorder


async def report_api_call(request: HotRequest) -> tuple[int, bytes]:
    """Report one call; it is priced and drawn from credits before the 201. The same id again
    returns the original with 200 and draws nothing; other content is a 409."""
    principal = require_metering(request.principal)
    report = request.parse(ApiCallReport)
    outcome = await _recorder(request).record(Reported(report, principal.token_id), request.now())
    if outcome.error is not None:
        raise outcome.error
    assert outcome.call is not None
    return outcome.status, ApiCallWithPrice.of(outcome.call).model_dump_json().encode()


async def report_api_calls(request: HotRequest) -> tuple[int, bytes]:
    """Report up to 1,000 calls; one result per call, in request order, each on its own."""
    principal = require_metering(request.principal)
    items = request.parse(ApiCallBatch).calls
    results: list[ApiCallResult | None] = [None] * len(items)
    valid: list[tuple[int, ApiCallReport]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, ApiCallReport.model_validate(item)))
        except ValidationError as exc:
            error = BadRequest(describe_validation(exc.errors()))
            results[index] = _result(_id_of(item), Outcome(400, error=error), request.request_id)
    reported = [Reported(report, principal.token_id) for _, report in valid]
    outcomes = await commit_calls(request.engine, request.catalog, reported, request.now())
    for (index, report), outcome in zip(valid, outcomes, strict=True):
        results[index] = _result(str(report.id), outcome, request.request_id)
    body = ApiCallBatchResults(results=[r for r in results if r is not None])
    return 200, body.model_dump_json().encode()


def _id_of(item: object) -> str | None:
    call_id = item.get("id") if isinstance(item, dict) else None
    return call_id if isinstance(call_id, str) else None


async def authorize_api_call(request: HotRequest) -> tuple[int, bytes]:
    """May this user (or org) make another call to `endpoint`? Writes nothing."""
    require_metering(request.principal)
    body = request.parse(AuthorizationRequest)
    async with reading(request.engine) as conn:
        position = await standing(
            conn,
            catalog=request.catalog,
            user_id=body.user_id,
            org_id=body.org_id,
            now=request.now(),
        )
    if not position.allowed:
        raise position.refusal()
    price = request.catalog.api_price(body.endpoint)
    authorization = Authorization(
        allowed=True,
        customer_kind=position.customer.kind,
        customer_id=position.customer.id,
        monthly_api_credits_remaining_monetary_value=from_micros(position.monthly_micros),
        stable_api_credits_remaining_monetary_value=from_micros(position.stable_micros),
        total_due=from_micros(position.total_due_micros),
        price_per_call=price.per_call,
        price_per_minute=price.per_minute,
    )
    return 200, authorization.model_dump_json().encode()


_METERING_ERRORS = {
    400: "Bad input",
    401: "No token, or a bad one",
    403: "Neither a service token nor staff",
    503: "The database is not answering, or too many reports wait: retry (Retry-After)",
}
HOT_ROUTES = [
    HotRoute(
        "POST",
        "/api-calls",
        report_api_call,
        "Report an API call (service or staff)",
        ApiCallWithPrice,
        body=ApiCallReport,
        status=201,
        also={200: "Reported before with the same content: the original, nothing drawn again"},
        errors={
            **_METERING_ERRORS,
            404: "Unknown user",
            409: "The id was reported with other content",
        },
    ),
    HotRoute(
        "POST",
        "/api-calls/batch",
        report_api_calls,
        "Report up to 1,000 API calls (service or staff)",
        ApiCallBatchResults,
        body=ApiCallBatch,
        errors=_METERING_ERRORS,
    ),
    HotRoute(
        "POST",
        "/api-calls/authorize",
        authorize_api_call,
        "May a customer make another call? (service or staff)",
        Authorization,
        body=AuthorizationRequest,
        errors={
            **_METERING_ERRORS,
            402: "Refused: no credits left, or money is due",
            404: "Unknown user",
        },
    ),
]


@for_user_and_org(router, "GET /{who}/api-calls", CALLS, response_model=ApiCallWithPriceResultsPage)
async def who_list_api_calls(calls: CallScope, page: Page) -> ApiCallWithPriceResultsPage:
    """The caller's API calls.

    Org admin: the API calls charged to the org."""
    return await calls.page(page)


@for_user_and_org(
    router,
    "GET /{who}/api-calls/{id:uuid}",
    CALLS,
    response_model=ApiCallWithPrice,
    responses=errors(404),
)
async def get_api_call_for_who(id: UUID, calls: CallScope) -> ApiCallWithPrice:
    """One of the caller's API calls.

    Org admin: one API call charged to the org."""
    return await calls.get(id)


@router.get(
    "/users/{id}/api-calls",
    response_model=ApiCallWithPriceResultsPage,
    responses=errors(403, 404),
)
async def list_api_calls_for_user(
    id: UserInPath, user: CurrentUser, conn: Conn, page: Page
) -> ApiCallWithPriceResultsPage:
    """The API calls of a user: yourself, or anyone for staff."""
    if not user.is_staff and id.lower() not in (user.id, user.email):
        raise Forbidden("you may list only your own API calls")
    target = await find_user(conn, id_or_email=id) if user.is_staff else user
    return await CallScope(conn, user_id=target.id).page(page)


@router.get("/api-calls", response_model=ApiCallWithPriceResultsPage)
async def list_api_calls(calls: AllCalls, page: Page) -> ApiCallWithPriceResultsPage:
    """Staff: every API call."""
    return await calls.page(page)


@router.get("/api-calls/{id:uuid}", response_model=ApiCallWithPrice, responses=errors(404))
async def get_api_call(id: UUID, calls: AllCalls) -> ApiCallWithPrice:
    """Staff: any API call."""
    return await calls.get(id)
