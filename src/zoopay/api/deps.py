"""What routes are given: the database, the catalog, the clock, and who is calling.

Every dependency is `async def`: FastAPI would run a plain `def` in a thread pool.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import Headers
from starlette.types import Scope

from zoopay.accounts.cache import TokenCache
from zoopay.accounts.service import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    Membership,
    Org,
    OrgRole,
    Principal,
    User,
    find_org,
    find_user,
    membership_of,
)
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest, Forbidden, NotFound, Unauthorized
from zoopay.ledger.service import Customer
from zoopay.processors.base import PaymentProcessor
from zoopay.wire import UUID_PATTERN

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer TOKEN`")


_T = TypeVar("_T")


def _reader(name: str) -> Callable[[Request], Any]:
    def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read


def _dependency(read: Callable[[Request], _T]) -> Callable[[Request], Awaitable[_T]]:
    async def dependency(request: Request) -> _T:
        return read(request)

    return dependency


# What the app keeps for every request (zoopay.app.create_app), read by routes and console pages.
engine_of: Callable[[Request], AsyncEngine] = _reader("engine")
catalog_of: Callable[[Request], Catalog] = _reader("catalog")
processor_of: Callable[[Request], PaymentProcessor] = _reader("processor")
settings_of: Callable[[Request], Settings] = _reader("settings")
get_engine = _dependency(engine_of)
get_catalog = _dependency(catalog_of)
get_processor = _dependency(processor_of)
Engine = Annotated[AsyncEngine, Depends(get_engine)]


def system_clock() -> datetime:
    return datetime.now(UTC)


async def get_now(request: Request) -> datetime:
    """The time, from the app's clock (tests replace it to move time)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


_READ_METHODS = frozenset({"GET", "HEAD"})


async def get_conn(
    request: Request, engine: Annotated[AsyncEngine, Depends(get_engine)]
) -> AsyncIterator[AsyncConnection]:
    """The request's unit of work, committed when the route returns. A GET only reads: it
    gets a connection outside any transaction, which on SQLite never waits for the write lock
    (a GET that may write, such as a balance refresh, opens its own transaction)."""
    if request.method in _READ_METHODS:
        async with reading(engine) as conn:
            yield conn
        return
    async with transaction(engine) as conn:
        yield conn


get_token_cache: Callable[[Request], Awaitable[TokenCache]] = _dependency(_reader("token_cache"))


async def current_principal(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # `_documented` only puts the bearer scheme in the OpenAPI document.
    return await authenticate_request(request.scope)


async def authenticate_request(scope: Scope) -> Principal:
    """Who is calling: the one authentication of every route, hot or not, done before its body
    is read and at most once a request (the answer is kept in the request's state)."""
    state = scope.setdefault("state", {})
    principal: Principal | None = state.get("principal")
    if principal is None:
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else None
        principal = await authenticate_bearer(scope["app"].state.token_cache, token)
        state["principal"] = principal
    return principal


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


CurrentUser = Annotated[User, Depends(current_user)]


async def staff_user(user: CurrentUser) -> User:
    if not user.is_staff:
        raise Forbidden("this endpoint is for staff only")
    return user


async def org_membership(engine: Engine, user: CurrentUser) -> Membership:
    async with reading(engine) as conn:
        membership = await membership_of(conn, user=user)
    if membership is None:
        raise NotFound("you do not belong to an org")
    return membership


async def org_reader(
    engine: Engine, principal: Annotated[Principal, Depends(current_principal)]
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


def strict_flag(value: object) -> bool:
    """A boolean in a query string is `true` or `false`, as the SDK sends it; nothing else
    (not "", "1", "yes" or "False", which a looser parser would take)."""
    if isinstance(value, bool):
        return value
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


def query_flag(name: str, value: str) -> bool:
    try:
        return strict_flag(value)
    except ValueError as exc:
        raise BadRequest(f"{name} {exc}") from None


Conn = Annotated[AsyncConnection, Depends(get_conn, scope="function")]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
Processor = Annotated[PaymentProcessor, Depends(get_processor)]
Now = Annotated[datetime, Depends(get_now)]
StaffUser = Annotated[User, Depends(staff_user)]
OrgMember = Annotated[Membership, Depends(org_membership)]
OrgReader = Annotated[Customer, Depends(org_reader)]
OrgAdmin = Annotated[Membership, Depends(org_admin)]


async def user_customer(user: CurrentUser) -> Customer:
    return user.customer


async def org_customer(admin: OrgAdmin) -> Customer:
    return admin.org


# Whose money a `/user/...` route, and the same `/org/...` route for the org's admins, handle.
UserCustomer = Annotated[Customer, Depends(user_customer)]
OrgCustomer = Annotated[Customer, Depends(org_customer)]

# Ids in paths as the services accept them, said in the OpenAPI document (the services refuse
# anything else with a message naming the id).
IdInPath = Annotated[
    str, Path(description="A UUID", json_schema_extra={"pattern": f"^{UUID_PATTERN}$"})
]
UserInPath = Annotated[
    str,
    Path(
        description="A user's id (a UUID) or email address",
        json_schema_extra={
            "pattern": f"^({UUID_PATTERN}|{EMAIL_PATTERN})$",
            "maxLength": MAX_EMAIL,
        },
    ),
]


async def any_user(staff: StaffUser, conn: Conn, id: UserInPath) -> User:
    """Staff: the user a path names by id or email (staff is checked before the id)."""
    return await find_user(conn, id_or_email=id)


async def any_org(staff: StaffUser, conn: Conn, id: IdInPath) -> Org:
    """Staff: the org a path names (staff is checked before the id)."""
    return await find_org(conn, org_id=id)


AnyUser = Annotated[User, Depends(any_user)]
AnyOrg = Annotated[Org, Depends(any_org)]
