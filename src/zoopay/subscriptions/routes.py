from fastapi import Request

from zoopay.api.deps import (
    AnyOrg,
    AnyUser,
    CatalogDep,
    Conn,
    CurrentUser,
    Engine,
    Now,
    OrgAdmin,
    OrgReader,
    StaffUser,
)
from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.billing.upgrades import change_plan_paid
from zoopay.catalog.schemas import (
    EnterpriseSubscriptionTierPrice,
    IndividualTierName,
    OrganizationTierName,
    TierName,
    ZooProductSubscriptions,
)
from zoopay.catalog.service import Catalog
from zoopay.db.engine import reading
from zoopay.errors import BadRequest, NotFound
from zoopay.ledger.service import Customer
from zoopay.subscriptions.schemas import (
    ZooProductSubscriptionsOrgRequest,
    ZooProductSubscriptionsUserRequest,
)
from zoopay.subscriptions.service import (
    change_plan,
    get_subscription,
    set_enterprise_price,
    subscription_details,
)

router = json_router(tags=["payments"])
# Zoo files these two staff endpoints under other tags: the SDK's `users` and `orgs` clients.
users_router = json_router(tags=["users"])
orgs_router = json_router(tags=["orgs"])


async def _details(conn: Conn, catalog: Catalog, customer: Customer) -> ZooProductSubscriptions:
    details = await subscription_details(conn, catalog, await get_subscription(conn, customer))
    if details is None:
        raise NotFound(f"this {customer.kind} has no subscription")
    return details


async def _subscribe(
    request: Request,
    engine: Engine,
    catalog: Catalog,
    customer: Customer,
    tier: TierName,
    pay_annually: bool | None,
    actor: str,
    now: Now,
    create_only: bool,
) -> ZooProductSubscriptions:
    """A customer's own change: an upgrade is charged first (zoopay.billing.upgrades). No
    request transaction is held: the processor is called between the change's own."""
    await change_plan_paid(
        engine,
        catalog,
        request.app.state.processor,
        request.app.state.change_terms,
        customer=customer,
        tier=tier,
        pay_annually=pay_annually,
        actor=actor,
        now=now,
        create_only=create_only,
    )
    async with reading(engine) as conn:
        return await _details(conn, catalog, customer)


def _user_tier(body: ZooProductSubscriptionsUserRequest) -> TierName:
    return TierName(body.modeling_app or IndividualTierName.FREE)


def _org_tier(body: ZooProductSubscriptionsOrgRequest) -> TierName:
    return TierName(body.modeling_app or OrganizationTierName.TEAM)


@router.get("/user/payment/subscriptions", response_model=ZooProductSubscriptions)
async def get_user_subscription(
    user: CurrentUser, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The caller's plan."""
    return await _details(conn, catalog, user.customer)


@router.post(
    "/user/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def create_user_subscription(
    body: ZooProductSubscriptionsUserRequest,
    user: CurrentUser,
    request: Request,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Subscribe the caller; 409 if they already have a paid plan."""
    return await _subscribe(
        request,
        engine,
        catalog,
        user.customer,
        _user_tier(body),
        body.pay_annually,
        user.id,
        now,
        True,
    )


@router.put(
    "/user/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def update_user_subscription(
    body: ZooProductSubscriptionsUserRequest,
    user: CurrentUser,
    request: Request,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Change the caller's plan, effective at once."""
    return await _subscribe(
        request,
        engine,
        catalog,
        user.customer,
        _user_tier(body),
        body.pay_annually,
        user.id,
        now,
        False,
    )


@router.get(
    "/org/payment/subscriptions", response_model=ZooProductSubscriptions, responses=errors(404)
)
async def get_org_subscription(
    org: OrgReader, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The plan of the caller's org (a member's, or an org service account's); 404 until it
    has one."""
    return await _details(conn, catalog, org)


@router.post(
    "/org/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def create_org_subscription(
    body: ZooProductSubscriptionsOrgRequest,
    admin: OrgAdmin,
    request: Request,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Org admin: subscribe the org; 409 if it already has a paid plan."""
    return await _subscribe(
        request,
        engine,
        catalog,
        admin.org,
        _org_tier(body),
        body.pay_annually,
        admin.user_id,
        now,
        True,
    )


@router.put(
    "/org/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def update_org_subscription(
    body: ZooProductSubscriptionsOrgRequest,
    admin: OrgAdmin,
    request: Request,
    engine: Engine,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Org admin: create or change the org's plan, effective at once."""
    return await _subscribe(
        request,
        engine,
        catalog,
        admin.org,
        _org_tier(body),
        body.pay_annually,
        admin.user_id,
        now,
        False,
    )


@users_router.put(
    "/users/{id}/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(404),
)
async def update_subscription_for_user(
    user: AnyUser,
    body: ZooProductSubscriptionsUserRequest,
    staff: StaffUser,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Staff: change any user's plan; `id` is a user id or email address. Comped: staff
    changes charge nothing and credit nothing."""
    await change_plan(
        conn, catalog, user.customer, _user_tier(body), body.pay_annually, staff.id, now
    )
    return await _details(conn, catalog, user.customer)


@orgs_router.put(
    "/orgs/{id}/enterprise/pricing",
    response_model=ZooProductSubscriptions,
    responses=errors(404),
)
async def update_enterprise_pricing_for_org(
    org: AnyOrg,
    body: EnterpriseSubscriptionTierPrice,
    conn: Conn,
    catalog: CatalogDep,
    now: Now,
) -> ZooProductSubscriptions:
    """Staff: set the price sales agreed with an org; returns the enterprise tier at that price."""
    enterprise = catalog.plan(TierName.ENTERPRISE)
    if enterprise is None:
        raise BadRequest("the catalog offers no enterprise tier")
    await set_enterprise_price(conn, org.customer, body, now)
    return ZooProductSubscriptions(modeling_app=enterprise.wire(body))
