import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from zoopay.api.deps import AnyOrg, AnyUser, Conn, CurrentUser, OrgAdmin
from zoopay.api.openapi import errors
from zoopay.api.pagination import Limit, PageToken
from zoopay.api.routing import json_router
from zoopay.errors import BadRequest
from zoopay.ledger.schemas import LedgerEntry, LedgerEntryResultsPage
from zoopay.ledger.service import Customer, list_entries
from zoopay.money import from_micros

router = json_router(tags=["ledger"])


@dataclass(frozen=True)
class EntryPage:
    """A page of a ledger, newest first: `limit` entries older than entry `before_id`."""

    limit: int
    before_id: int | None


# An entry id as this server writes it: ASCII digits that fit a BIGINT.
_ENTRY_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


async def entry_page(limit: Limit = 100, page_token: PageToken = None) -> EntryPage:
    if page_token is None:
        return EntryPage(limit, None)
    if not _ENTRY_ID.fullmatch(page_token):
        raise BadRequest("page_token is not one this server issued")
    return EntryPage(limit, int(page_token))


Page = Annotated[EntryPage, Depends(entry_page)]


async def _page(conn: Conn, customer: Customer, page: EntryPage) -> LedgerEntryResultsPage:
    rows = await list_entries(conn, customer, page.limit + 1, page.before_id)
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
            note=entry.note,
            created_at=entry.created_at,
        )
        for entry in rows[: page.limit]
    ]
    next_page = str(items[-1].id) if len(rows) > page.limit else None
    return LedgerEntryResultsPage(items=items, next_page=next_page)


@router.get("/user/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_user(user: CurrentUser, conn: Conn, page: Page) -> LedgerEntryResultsPage:
    """The caller's ledger, newest first."""
    return await _page(conn, user.customer, page)


@router.get("/org/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_org(admin: OrgAdmin, conn: Conn, page: Page) -> LedgerEntryResultsPage:
    """Org admin: the org's ledger, newest first."""
    return await _page(conn, admin.org, page)


@router.get(
    "/users/{id}/payment/ledger", response_model=LedgerEntryResultsPage, responses=errors(404)
)
async def list_ledger_for_any_user(user: AnyUser, conn: Conn, page: Page) -> LedgerEntryResultsPage:
    """Staff: a user's ledger, newest first; `id` is a user id or email."""
    return await _page(conn, user.customer, page)


@router.get(
    "/orgs/{id}/payment/ledger", response_model=LedgerEntryResultsPage, responses=errors(404)
)
async def list_ledger_for_any_org(org: AnyOrg, conn: Conn, page: Page) -> LedgerEntryResultsPage:
    """Staff: an org's ledger, newest first."""
    return await _page(conn, org.customer, page)
