from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from pydantic import BeforeValidator
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.accounts.service import Org, User
from zoopay.api.deps import (
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
from zoopay.api.routing import ANY_ACCOUNTS, Endpoint, for_user_and_org, json_router
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


@dataclass(frozen=True)
class BalanceDesk:
    """What a balance read works with; it opens its own connection (see `current_statement`)."""

    engine: AsyncEngine
    catalog: Catalog
    now: datetime
    include_total_due: bool

    async def read(self, customer: Customer) -> CustomerBalance:
        statement = await current_statement(self.engine, self.catalog, customer, self.now)
        return CustomerBalance.of(statement, self.include_total_due)


async def balance_desk(
    engine: Engine, catalog: CatalogDep, now: Now, include_total_due: IncludeTotalDue = True
) -> BalanceDesk:
    return BalanceDesk(engine, catalog, now, include_total_due)


Balances = Annotated[BalanceDesk, Depends(balance_desk)]


@dataclass(frozen=True)
class BalanceChange:
    """Staff's absolute amounts for a balance, and what applying them works with."""

    body: UpdatePaymentBalance
    staff: User
    conn: AsyncConnection
    catalog: Catalog
    now: datetime
    include_total_due: bool

    async def apply(self, customer: Customer) -> CustomerBalance:
        monthly = self.body.monthly_api_credits_remaining_monetary_value
        stable = self.body.stable_api_credits_remaining_monetary_value
        statement = await set_balance(
            self.conn,
            catalog=self.catalog,
            customer=customer,
            monthly_micros=to_micros(monthly) if monthly is not None else None,
            stable_micros=to_micros(stable) if stable is not None else None,
            actor=self.staff.id,
            now=self.now,
        )
        return CustomerBalance.of(statement, self.include_total_due)


async def balance_change(
    body: UpdatePaymentBalance,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
    include_total_due: IncludeTotalDue = True,
) -> BalanceChange:
    return BalanceChange(body, staff, conn, catalog, now, include_total_due)


# Function-scoped like the connection it holds, which commits when the route returns.
BalanceChanges = Annotated[BalanceChange, Depends(balance_change, scope="function")]


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
async def get_payment_balance_for_org(org: OrgReader, balances: Balances) -> CustomerBalance:
    """The balance of the caller's org (a member's, or an org service account's)."""
    return await balances.read(org)


def _any_balance(route: str) -> Callable[[Endpoint], Endpoint]:
    """Staff's route for any user's balance and, the same, for any org's."""
    return for_user_and_org(router, route, ANY_ACCOUNTS, response_model=CustomerBalance)


@_any_balance("GET /{who}s/{id}/payment/balance")
async def get_payment_balance_for_any_who(
    account: User | Org, balances: Balances
) -> CustomerBalance:
    """Staff: any user's balance; `id` is a user id or email address.

    Staff: any org's balance."""
    return await balances.read(account.customer)


@_any_balance("PUT /{who}s/{id}/payment/balance")
async def update_payment_balance_for_any_who(
    account: User | Org, change: BalanceChanges
) -> CustomerBalance:
    """Staff: set a user's monthly and/or stable credits to absolute amounts.

    Staff: set an org's monthly and/or stable credits to absolute amounts."""
    return await change.apply(account.customer)
