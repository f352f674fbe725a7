from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from zoopay.accounts.service import find_user
from zoopay.api.deps import (
    CatalogDep,
    Conn,
    CurrentUser,
    MeteringPrincipal,
    Now,
    OrgAdmin,
    StaffUser,
)
from zoopay.api.errors import Error, request_id_of
from zoopay.api.pagination import Page, encode_page_token
from zoopay.api.routing import json_router
from zoopay.errors import Forbidden
from zoopay.metering.batcher import CallRecorder
from zoopay.metering.schemas import (
    ApiCallBatch,
    ApiCallBatchResults,
    ApiCallReport,
    ApiCallResult,
    ApiCallWithPrice,
    ApiCallWithPriceResultsPage,
    Authorization,
    AuthorizationRequest,
    Method,
)
from zoopay.metering.service import (
    CallRecord,
    Outcome,
    Reported,
    get_call,
    list_calls,
    record_calls,
    standing,
)
from zoopay.money import from_micros

router = json_router(tags=["api-calls"])


async def get_recorder(request: Request) -> CallRecorder:
    recorder: CallRecorder = request.app.state.call_recorder
    return recorder


Recorder = Annotated[CallRecorder, Depends(get_recorder)]


def api_call_with_price(call: CallRecord) -> ApiCallWithPrice:
    return ApiCallWithPrice(
        completed_at=call.completed_at,
        created_at=call.created_at,
        duration=call.duration_ms,
        email=call.email,
        endpoint=call.endpoint,
        id=call.id,
        ip_address=call.ip_address,
        method=Method(call.method),
        minutes=call.minutes,
        org_id=call.org_id,
        origin=call.origin,
        price=from_micros(call.price_micros),
        started_at=call.started_at,
        status_code=call.status_code,
        token=call.token,
        updated_at=call.created_at,
        user_agent=call.user_agent,
        user_id=call.user_id,
    )


def _result(outcome: Outcome, request: Request) -> ApiCallResult:
    if outcome.error is not None:
        error = outcome.error
        return ApiCallResult(
            status=outcome.status,
            error=Error(
                error_code=error.error_code,
                message=error.message,
                request_id=request_id_of(request),
            ),
        )
    assert outcome.call is not None
    return ApiCallResult(status=outcome.status, api_call=api_call_with_price(outcome.call))


def _page(rows: list[CallRecord], limit: int) -> ApiCallWithPriceResultsPage:
    items = [api_call_with_price(row) for row in rows[:limit]]
    next_page = None
    if len(rows) > limit:
        last = items[-1]
        next_page = encode_page_token(last.created_at, last.id)
    return ApiCallWithPriceResultsPage(items=items, next_page=next_page)


@router.post(
    "/api-calls",
    status_code=201,
    response_model=ApiCallWithPrice,
    responses={200: {"model": ApiCallWithPrice, "description": "Already recorded: the original"}},
)
async def report_api_call(
    body: ApiCallReport,
    principal: MeteringPrincipal,
    recorder: Recorder,
    now: Now,
    request: Request,
) -> JSONResponse:
    """Service or staff: report one call; it is priced and drawn from credits before the 201.
    The same id again returns the original with 200 and draws nothing; other content is 409."""
    outcome = await recorder.record(Reported(body, principal.token_id), now)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.call is not None
    wire = api_call_with_price(outcome.call)
    return JSONResponse(wire.model_dump(mode="json"), status_code=outcome.status)


@router.post("/api-calls/batch", response_model=ApiCallBatchResults)
async def report_api_calls(
    body: ApiCallBatch,
    principal: MeteringPrincipal,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    request: Request,
) -> ApiCallBatchResults:
    """Service or staff: report up to 1,000 calls; one result per call, in request order."""
    outcomes = await record_calls(
        conn, catalog, [Reported(c, principal.token_id) for c in body.calls], now
    )
    return ApiCallBatchResults(results=[_result(outcome, request) for outcome in outcomes])


@router.post(
    "/api-calls/authorize",
    response_model=Authorization,
    responses={402: {"model": Error, "description": "The customer may not make another call"}},
)
async def authorize_api_call(
    body: AuthorizationRequest,
    principal: MeteringPrincipal,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
) -> Authorization:
    """Service or staff: may this user (or org) make another call to `endpoint`? Writes nothing."""
    position = await standing(conn, catalog, body.user_id, body.org_id, now)
    if not position.allowed:
        raise position.refusal()
    price = catalog.api_price(body.endpoint)
    return Authorization(
        allowed=True,
        customer_kind=position.customer.kind,
        customer_id=position.customer.id,
        monthly_api_credits_remaining_monetary_value=from_micros(position.monthly_micros),
        stable_api_credits_remaining_monetary_value=from_micros(position.stable_micros),
        total_due=from_micros(position.total_due_micros),
        price_per_call=price.per_call,
        price_per_minute=price.per_minute,
    )


@router.get("/user/api-calls", response_model=ApiCallWithPriceResultsPage)
async def user_list_api_calls(
    user: CurrentUser, conn: Conn, page: Page
) -> ApiCallWithPriceResultsPage:
    """The caller's API calls."""
    rows = await list_calls(
        conn, page.limit + 1, page.after, descending=page.descending, user_id=user.id
    )
    return _page(rows, page.limit)


@router.get("/user/api-calls/{id}", response_model=ApiCallWithPrice)
async def get_api_call_for_user(id: str, user: CurrentUser, conn: Conn) -> ApiCallWithPrice:
    """One of the caller's API calls."""
    return api_call_with_price(await get_call(conn, id, user_id=user.id))


@router.get("/org/api-calls", response_model=ApiCallWithPriceResultsPage)
async def org_list_api_calls(
    admin: OrgAdmin, conn: Conn, page: Page
) -> ApiCallWithPriceResultsPage:
    """Org admin: the API calls charged to the org."""
    rows = await list_calls(
        conn, page.limit + 1, page.after, descending=page.descending, org_id=admin.org_id
    )
    return _page(rows, page.limit)


@router.get("/org/api-calls/{id}", response_model=ApiCallWithPrice)
async def get_api_call_for_org(id: str, admin: OrgAdmin, conn: Conn) -> ApiCallWithPrice:
    """Org admin: one API call charged to the org."""
    return api_call_with_price(await get_call(conn, id, org_id=admin.org_id))


@router.get("/users/{id}/api-calls", response_model=ApiCallWithPriceResultsPage)
async def list_api_calls_for_user(
    id: str, user: CurrentUser, conn: Conn, page: Page
) -> ApiCallWithPriceResultsPage:
    """The API calls of a user: yourself, or anyone for staff."""
    target = await find_user(conn, id) if user.is_staff else user
    if not user.is_staff and id not in (user.id, user.email):
        raise Forbidden("you may list only your own API calls")
    rows = await list_calls(
        conn, page.limit + 1, page.after, descending=page.descending, user_id=target.id
    )
    return _page(rows, page.limit)


@router.get("/api-calls", response_model=ApiCallWithPriceResultsPage)
async def list_api_calls(staff: StaffUser, conn: Conn, page: Page) -> ApiCallWithPriceResultsPage:
    """Staff: every API call."""
    rows = await list_calls(conn, page.limit + 1, page.after, descending=page.descending)
    return _page(rows, page.limit)


@router.get("/api-calls/{id}", response_model=ApiCallWithPrice)
async def get_api_call(id: str, staff: StaffUser, conn: Conn) -> ApiCallWithPrice:
    """Staff: any API call."""
    return api_call_with_price(await get_call(conn, id))
