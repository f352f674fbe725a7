"""What routes are given: the database, the catalog, the clock, and who is calling."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.accounts.service import Membership, OrgRole, User, authenticate, membership_of
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.errors import Forbidden, NotFound, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer TOKEN`")


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def get_now() -> datetime:
    return datetime.now(UTC)


async def get_conn(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncConnection]:
    """The request's unit of work, committed when the route returns."""
    async with transaction(engine) as conn:
        yield conn


async def current_user(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise Unauthorized("an API token is required: send `Authorization: Bearer TOKEN`")
    async with engine.connect() as conn:
        user = await authenticate(conn, credentials.credentials)
    if user is None:
        raise Unauthorized("the API token is not valid")
    return user


async def staff_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_staff:
        raise Forbidden("this endpoint is for staff only")
    return user


async def org_membership(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
    user: Annotated[User, Depends(current_user)],
) -> Membership:
    async with engine.connect() as conn:
        membership = await membership_of(conn, user)
    if membership is None:
        raise NotFound("you do not belong to an org")
    return membership


async def org_admin(membership: Annotated[Membership, Depends(org_membership)]) -> Membership:
    if membership.role != OrgRole.ADMIN:
        raise Forbidden("only an admin of the org may do this")
    return membership


Conn = Annotated[AsyncConnection, Depends(get_conn, scope="function")]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
Now = Annotated[datetime, Depends(get_now)]
CurrentUser = Annotated[User, Depends(current_user)]
StaffUser = Annotated[User, Depends(staff_user)]
OrgMember = Annotated[Membership, Depends(org_membership)]
OrgAdmin = Annotated[Membership, Depends(org_admin)]
