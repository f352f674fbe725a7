"""What routes are given: the database, the catalog, the clock, and who is calling.

Every dependency is `async def`: FastAPI would run a plain `def` in a thread pool.
"""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.accounts.cache import TokenCache
from zoopay.accounts.service import Membership, OrgRole, Principal, User, membership_of
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.errors import Forbidden, NotFound, Unauthorized
from zoopay.ledger.service import Customer

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer TOKEN`")


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def system_clock() -> datetime:
    return datetime.now(UTC)


async def get_now(request: Request) -> datetime:
    """The time, from the app's clock (tests replace it to move time)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


async def get_conn(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncConnection]:
    """The request's unit of work, committed when the route returns."""
    async with transaction(engine) as conn:
        yield conn


async def get_token_cache(request: Request) -> TokenCache:
    cache: TokenCache = request.app.state.token_cache
    return cache


async def current_principal(
    cache: Annotated[TokenCache, Depends(get_token_cache)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await authenticate_bearer(cache, credentials.credentials if credentials else None)


async def authenticate_bearer(cache: TokenCache, token: str | None) -> Principal:
    """Who holds this bearer token; 401 without one or with a bad one."""
    if not token:
        raise Unauthorized("an API token is required: send `Authorization: Bearer TOKEN`")
    principal = await cache.principal(token)
    if principal is None:
        raise Unauthorized("the API token is not valid")
    return principal


def require_user(principal: Principal) -> User:
    if principal.user is None:
        raise Forbidden(
            "a service token may only report usage and ask for authorizations, and an org's "
            "service account only read its org's balance and plan"
        )
    return principal.user


def require_metering(principal: Principal) -> Principal:
    if not principal.may_meter:
        raise Forbidden("only a service token or staff may report usage")
    return principal


async def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> User:
    return require_user(principal)


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


async def org_reader(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> Customer:
    """The org whose balance and plan the caller may read: their own, or, for an org's service
    account, that org (the only thing a service account may do)."""
    if principal.org_id is not None:
        return Customer("org", principal.org_id)
    return (await org_membership(engine, require_user(principal))).org


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
OrgReader = Annotated[Customer, Depends(org_reader)]
OrgAdmin = Annotated[Membership, Depends(org_admin)]
