"""Keyset pagination in the SDK's shape: `limit`, an opaque `page_token`, `sort_by`."""

import base64
import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict, TypeVar

from fastapi import Depends, Query

from zoopay.errors import BadRequest

MAX_PAGE = 1000
T = TypeVar("T")
P = TypeVar("P")


class CreatedAtSortMode(enum.StrEnum):
    CREATED_AT_ASCENDING = "created_at_ascending"
    CREATED_AT_DESCENDING = "created_at_descending"


def encode_page_token(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created_at, row_id = raw.split("|", 1)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError("a page token's time has a time zone")
        return when.astimezone(UTC), str(uuid.UUID(row_id))
    except (ValueError, OverflowError):
        raise BadRequest("page_token is not one this server issued") from None


class Window(TypedDict):
    """What a listing service is asked for (its `limit`, `after` and `descending`)."""

    limit: int
    after: tuple[datetime, str] | None
    descending: bool


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: tuple[datetime, str] | None
    descending: bool

    def window(self) -> Window:
        """One row more than the page: the extra one says that another page follows."""
        return Window(limit=self.limit + 1, after=self.after, descending=self.descending)


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")]
PageToken = Annotated[str | None, Query(description="`next_page` of the last page")]


async def page_request(
    limit: Limit = 100,
    page_token: PageToken = None,
    sort_by: CreatedAtSortMode = CreatedAtSortMode.CREATED_AT_ASCENDING,
) -> PageRequest:
    after = decode_page_token(page_token) if page_token else None
    return PageRequest(limit, after, sort_by == CreatedAtSortMode.CREATED_AT_DESCENDING)


Page = Annotated[PageRequest, Depends(page_request)]


def next_page_token(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, str]]
) -> str | None:
    """Listings fetch `limit + 1` rows: the extra one says that another page follows."""
    if len(rows) <= limit:
        return None
    return encode_page_token(*key(rows[limit - 1]))


def _created_and_id(row: Any) -> tuple[datetime, str]:
    return row.created_at, row.id


def results_page(
    model: Callable[..., P],
    rows: Sequence[T],
    page: PageRequest,
    shown: Callable[[T], Any],
    key: Callable[[T], tuple[datetime, str]] = _created_and_id,
) -> P:
    """The SDK's `...ResultsPage` of the rows a listing fetched with `page.window()`."""
    items = [shown(row) for row in rows[: page.limit]]
    return model(items=items, next_page=next_page_token(rows, page.limit, key))
