from typing import Annotated

from fastapi import Query

from zoopay.accounts.service import find_org, find_user
from zoopay.api.deps import Conn, CurrentUser, OrgAdmin, StaffUser
from zoopay.api.routing import json_router
from zoopay.errors import BadRequest
from zoopay.ledger.schemas import LedgerEntry, LedgerEntryResultsPage
from zoopay.ledger.service import Customer, list_entries
from zoopay.money import from_micros

router = json_router(tags=["ledger"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Entries per page")]
PageToken = Annotated[str | None, Query(description="`next_page` of the last page")]


def _before(page_token: str | None) -> int | None:
    if page_token is None:
        return None
    if not page_token.isdigit():
        raise BadRequest("page_token is not one this server issued")
    return int(page_token)


async def _page(
    conn: Conn, customer: Customer, limit: int, page_token: str | None
) -> LedgerEntryResultsPage:
    rows = await list_entries(conn, customer, limit + 1, _before(page_token))
    items = [
        LedgerEntry(
            id=entry.id,
            customer_id=entry.customer_id,
            bucket=entry.bucket,
            delta=from_micros(entry.delta_micros),
            balance_after=from_micros(entry.balance_after_micros),
            reason=entry.reason,
            reference=entry.reference,
            actor=entry.actor,
            created_at=entry.created_at,
        )
        for entry in rows[:limit]
    ]
    next_page = str(items[-1].id) if len(rows) > limit else None
    return LedgerEntryResultsPage(items=items, next_page=next_page)


@router.get("/user/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_user(
    user: CurrentUser, conn: Conn, limit: Limit = 100, page_token: PageToken = None
) -> LedgerEntryResultsPage:
    """The caller's ledger, newest first."""
    return await _page(conn, user.customer, limit, page_token)


@router.get("/org/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_org(
    admin: OrgAdmin, conn: Conn, limit: Limit = 100, page_token: PageToken = None
) -> LedgerEntryResultsPage:
    """Org admin: the org's ledger, newest first."""
    return await _page(conn, admin.org, limit, page_token)


@router.get("/users/{id}/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_any_user(
    id: str, staff: StaffUser, conn: Conn, limit: Limit = 100, page_token: PageToken = None
) -> LedgerEntryResultsPage:
    """Staff: a user's ledger, newest first; `id` is a user id or email."""
    user = await find_user(conn, id)
    return await _page(conn, user.customer, limit, page_token)


@router.get("/orgs/{id}/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_any_org(
    id: str, staff: StaffUser, conn: Conn, limit: Limit = 100, page_token: PageToken = None
) -> LedgerEntryResultsPage:
    """Staff: an org's ledger, newest first."""
    org = await find_org(conn, id)
    return await _page(conn, org.customer, limit, page_token)
