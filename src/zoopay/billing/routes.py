from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.api.deps import (
    AnyOrg,
    AnyUser,
    CatalogDep,
    Conn,
    Engine,
    Now,
    OrgReader,
    StaffUser,
    require_user,
    strict_flag,
)
from zoopay.api.hotpath import HotRequest, HotRoute
from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.billing.schemas import CustomerBalance, UpdatePaymentBalance
from zoopay.billing.service import (
    BalanceStatement,
    balance_statement,
    balance_statement_if_current,
    set_balance,
)
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading, transaction
from zoopay.ledger.service import Customer
from zoopay.money import to_micros

router = json_router(tags=["payments"])

IncludeTotalDue = Annotated[
    bool,
    BeforeValidator(strict_flag),
    Query(description="Whether to include `total_due` (null when false)"),
]


async def current_statement(
    engine: AsyncEngine, catalog: Catalog, customer: Customer, now: datetime
) -> BalanceStatement:
    """The balance now: read outside any transaction (on SQLite, without the write lock),
    unless a new period began and it must be refreshed first, in a transaction."""
    async with reading(engine) as conn:
        statement = await balance_statement_if_current(
            conn, catalog=catalog, customer=customer, now=now
        )
    if statement is None:
        async with transaction(engine) as conn:
            statement = await balance_statement(conn, catalog=catalog, customer=customer, now=now)
    return statement


async def _read(
    engine: AsyncEngine, catalog: Catalog, customer: Customer, now: datetime, include: bool
) -> CustomerBalance:
    return CustomerBalance.of(await current_statement(engine, catalog, customer, now), include)


async def _update(
    conn: Conn,
    catalog: CatalogDep,
    customer: Customer,
    body: UpdatePaymentBalance,
    staff: StaffUser,
    now: Now,
    include_total_due: bool,
) -> CustomerBalance:
    monthly = body.monthly_api_credits_remaining_monetary_value
    stable = body.stable_api_credits_remaining_monetary_value
    statement = await set_balance(
        conn,
        catalog=catalog,
        customer=customer,
        monthly_micros=to_micros(monthly) if monthly is not None else None,
        stable_micros=to_micros(stable) if stable is not None else None,
        actor=staff.id,
        now=now,
    )
    return CustomerBalance.of(statement, include_total_due)


async def get_payment_balance_for_user(request: HotRequest) -> tuple[int, bytes]:
    """The caller's own balance."""
    user = require_user(request.principal)
    include_total_due = request.flag("include_total_due", True)
    statement = await current_statement(
        request.engine, request.catalog, user.customer, request.now()
    )
    return 200, CustomerBalance.of(statement, include_total_due).model_dump_json().encode()


HOT_ROUTES = [
    HotRoute(
        "GET",
        "/user/payment/balance",
        get_payment_balance_for_user,
        "Get balance for your user",
        CustomerBalance,
        tag="payments",
        errors={401: "No token, or a bad one", 403: "A service token"},
        query={"include_total_due": "Whether to include `total_due` (null when false)"},
    )
]


@router.get("/org/payment/balance", response_model=CustomerBalance)
async def get_payment_balance_for_org(
    org: OrgReader,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """The balance of the caller's org (a member's, or an org service account's)."""
    return await _read(engine, catalog, org, now, include_total_due)


@router.get("/users/{id}/payment/balance", response_model=CustomerBalance, responses=errors(404))
async def get_payment_balance_for_any_user(
    user: AnyUser,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: any user's balance; `id` is a user id or email address."""
    return await _read(engine, catalog, user.customer, now, include_total_due)


@router.put("/users/{id}/payment/balance", response_model=CustomerBalance, responses=errors(404))
async def update_payment_balance_for_any_user(
    user: AnyUser,
    body: UpdatePaymentBalance,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: set a user's monthly and/or stable credits to absolute amounts."""
    return await _update(conn, catalog, user.customer, body, staff, now, include_total_due)


@router.get("/orgs/{id}/payment/balance", response_model=CustomerBalance, responses=errors(404))
async def get_payment_balance_for_any_org(
    org: AnyOrg,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: any org's balance."""
    return await _read(engine, catalog, org.customer, now, include_total_due)


@router.put("/orgs/{id}/payment/balance", response_model=CustomerBalance, responses=errors(404))
async def update_payment_balance_for_any_org(
    org: AnyOrg,
    body: UpdatePaymentBalance,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: set an org's monthly and/or stable credits to absolute amounts."""
    return await _update(conn, catalog, org.customer, body, staff, now, include_total_due)
