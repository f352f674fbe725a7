import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from zoopay.accounts.service import Org, User
from zoopay.api.deps import Conn
from zoopay.api.pagination import Limit, PageToken
from zoopay.api.routing import ANY_ACCOUNTS, for_user_and_org, json_router
from zoopay.errors import BadRequest
from zoopay.ledger.schemas import LedgerEntry, LedgerEntryResultsPage
from zoopay.ledger.service import Customer, list_entries

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
    rows = await list_entries(
        conn, customer=customer, limit=page.limit + 1, before_id=page.before_id
    )
    items = [LedgerEntry.of(entry) for entry in rows[: page.limit]]
    next_page = str(items[-1].id) if len(rows) > page.limit else None
    return LedgerEntryResultsPage(items=items, next_page=next_page)


@for_user_and_org(router, "GET /{who}/payment/ledger", response_model=LedgerEntryResultsPage)
async def list_ledger_for_who(customer: Customer, conn: Conn, page: Page) -> LedgerEntryResultsPage:
    """The caller's ledger, newest first.

    Org admin: the org's ledger, newest first."""
    return await _page(conn, customer, page)


@for_user_and_org(
    router,
    "GET /{who}s/{id}/payment/ledger",
    ANY_ACCOUNTS,
    response_model=LedgerEntryResultsPage,
)
async def list_ledger_for_any_who(
    account: User | Org, conn: Conn, page: Page
) -> LedgerEntryResultsPage:
    """Staff: a user's ledger, newest first; `id` is a user id or email.

    Staff: an org's ledger, newest first."""
    return await _page(conn, account.customer, page)
