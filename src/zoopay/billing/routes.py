from typing import Annotated

from fastapi import Query

from zoopay.accounts.service import find_org, find_user
from zoopay.api.deps import CatalogDep, Conn, Now, OrgReader, StaffUser, require_user
from zoopay.api.hotpath import HotRequest, HotRoute
from zoopay.api.routing import json_router
from zoopay.billing.schemas import CustomerBalance, UpdatePaymentBalance
from zoopay.billing.service import (
    BalanceStatement,
    balance_statement,
    balance_statement_if_current,
    set_balance,
)
from zoopay.db.engine import reading, transaction
from zoopay.ledger.service import Customer
from zoopay.money import credits_for, from_micros, to_micros

router = json_router(tags=["payments"])

IncludeTotalDue = Annotated[
    bool, Query(description="Whether to include `total_due` (null when false)")
]


def customer_balance(statement: BalanceStatement, include_total_due: bool) -> CustomerBalance:
    balance, price = statement.balance, statement.credit_price_micros
    return CustomerBalance(
        created_at=balance.created_at,
        id=balance.id,
        map_id=balance.customer.id,
        modeling_app_enterprise_price=statement.enterprise_price,
        monthly_api_credits_remaining=credits_for(balance.monthly_micros, price),
        monthly_api_credits_remaining_monetary_value=from_micros(balance.monthly_micros),
        stable_api_credits_remaining=credits_for(balance.stable_micros, price),
        stable_api_credits_remaining_monetary_value=from_micros(balance.stable_micros),
        subscription_details=statement.details,
        subscription_id=statement.subscription.id if statement.subscription else None,
        total_due=from_micros(balance.total_due_micros) if include_total_due else None,
        updated_at=balance.updated_at,
    )


async def _read(
    conn: Conn, catalog: CatalogDep, customer: Customer, now: Now, include_total_due: bool
) -> CustomerBalance:
    statement = await balance_statement(conn, catalog, customer, now)
    return customer_balance(statement, include_total_due)


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
        catalog,
        customer,
        to_micros(monthly) if monthly is not None else None,
        to_micros(stable) if stable is not None else None,
        actor=staff.id,
        now=now,
    )
    return customer_balance(statement, include_total_due)


async def get_payment_balance_for_user(request: HotRequest) -> tuple[int, bytes]:
    """The caller's own balance."""
    user = require_user(request.principal)
    include_total_due = request.flag("include_total_due", True)
    async with reading(request.engine) as conn:
        statement = await balance_statement_if_current(
            conn, request.catalog, user.customer, request.now()
        )
    if statement is None:  # a new period began: refresh first, in a transaction
        async with transaction(request.engine) as conn:
            statement = await balance_statement(conn, request.catalog, user.customer, request.now())
    return 200, customer_balance(statement, include_total_due).model_dump_json().encode()


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
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """The balance of the caller's org (a member's, or an org service account's)."""
    return await _read(conn, catalog, org, now, include_total_due)


@router.get("/users/{id}/payment/balance", response_model=CustomerBalance)
async def get_payment_balance_for_any_user(
    id: str,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: any user's balance; `id` is a user id or email address."""
    user = await find_user(conn, id)
    return await _read(conn, catalog, user.customer, now, include_total_due)


@router.put("/users/{id}/payment/balance", response_model=CustomerBalance)
async def update_payment_balance_for_any_user(
    id: str,
    body: UpdatePaymentBalance,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: set a user's monthly and/or stable credits to absolute amounts."""
    user = await find_user(conn, id)
    return await _update(conn, catalog, user.customer, body, staff, now, include_total_due)


@router.get("/orgs/{id}/payment/balance", response_model=CustomerBalance)
async def get_payment_balance_for_any_org(
    id: str,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: any org's balance."""
    org = await find_org(conn, id)
    return await _read(conn, catalog, org.customer, now, include_total_due)


@router.put("/orgs/{id}/payment/balance", response_model=CustomerBalance)
async def update_payment_balance_for_any_org(
    id: str,
    body: UpdatePaymentBalance,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> CustomerBalance:
    """Staff: set an org's monthly and/or stable credits to absolute amounts."""
    org = await find_org(conn, id)
    return await _update(conn, catalog, org.customer, body, staff, now, include_total_due)
