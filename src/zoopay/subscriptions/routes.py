from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.service import Membership
from zoopay.api.deps import (
    AnyOrg,
    AnyUser,
    CatalogDep,
    Conn,
    CurrentUser,
    Now,
    OrgAdmin,
    OrgReader,
    StaffUser,
)
from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.catalog.schemas import (
    EnterpriseSubscriptionTierPrice,
    IndividualTierName,
    OrganizationTierName,
    TierName,
    ZooProductSubscriptions,
)
from zoopay.catalog.service import Catalog
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


@dataclass(frozen=True)
class PlanDesk:
    """What every plan route works with: the request's unit of work, the catalog, the time."""

    conn: AsyncConnection
    catalog: Catalog
    now: datetime

    async def details(self, customer: Customer) -> ZooProductSubscriptions:
        subscription = await get_subscription(self.conn, customer=customer)
        subscribed = await subscription_details(
            self.conn, catalog=self.catalog, subscription=subscription
        )
        if subscribed is None:
            raise NotFound(f"this {customer.kind} has no subscription")
        return ZooProductSubscriptions.of(subscribed.plan, subscribed.price)

    async def subscribe(
        self,
        customer: Customer,
        *,
        tier: TierName,
        pay_annually: bool | None,
        actor: str,
        create_only: bool = False,
    ) -> ZooProductSubscriptions:
        await change_plan(
            self.conn,
            catalog=self.catalog,
            customer=customer,
            tier=tier,
            pay_annually=pay_annually,
            actor=actor,
            now=self.now,
            create_only=create_only,
        )
        return await self.details(customer)

    async def subscribe_user(
        self, user: Customer, body: ZooProductSubscriptionsUserRequest, actor: str, *, create: bool
    ) -> ZooProductSubscriptions:
        tier = TierName(body.modeling_app or IndividualTierName.FREE)
        return await self.subscribe(
            user, tier=tier, pay_annually=body.pay_annually, actor=actor, create_only=create
        )

    async def subscribe_org(
        self, admin: Membership, body: ZooProductSubscriptionsOrgRequest, *, create: bool
    ) -> ZooProductSubscriptions:
        tier = TierName(body.modeling_app or OrganizationTierName.TEAM)
        return await self.subscribe(
            admin.org,
            tier=tier,
            pay_annually=body.pay_annually,
            actor=admin.user_id,
            create_only=create,
        )


async def plan_desk(conn: Conn, catalog: CatalogDep, now: Now) -> PlanDesk:
    return PlanDesk(conn, catalog, now)


# Function-scoped like the connection it holds, which commits when the route returns.
Plans = Annotated[PlanDesk, Depends(plan_desk, scope="function")]


@router.get("/user/payment/subscriptions", response_model=ZooProductSubscriptions)
async def get_user_subscription(user: CurrentUser, plans: Plans) -> ZooProductSubscriptions:
    """The caller's plan."""
    return await plans.details(user.customer)


@router.post(
    "/user/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(409),
)
async def create_user_subscription(
    body: ZooProductSubscriptionsUserRequest, user: CurrentUser, plans: Plans
) -> ZooProductSubscriptions:
    """Subscribe the caller; 409 if they already have a paid plan."""
    return await plans.subscribe_user(user.customer, body, user.id, create=True)


@router.put("/user/payment/subscriptions", response_model=ZooProductSubscriptions)
async def update_user_subscription(
    body: ZooProductSubscriptionsUserRequest, user: CurrentUser, plans: Plans
) -> ZooProductSubscriptions:
    """Change the caller's plan, effective at once."""
    return await plans.subscribe_user(user.customer, body, user.id, create=False)


@router.get(
    "/org/payment/subscriptions", response_model=ZooProductSubscriptions, responses=errors(404)
)
async def get_org_subscription(org: OrgReader, plans: Plans) -> ZooProductSubscriptions:
    """The plan of the caller's org (a member's, or an org service account's); 404 until it
    has one."""
    return await plans.details(org)


@router.post(
    "/org/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def create_org_subscription(
    body: ZooProductSubscriptionsOrgRequest, admin: OrgAdmin, plans: Plans
) -> ZooProductSubscriptions:
    """Org admin: subscribe the org; 409 if it already has a paid plan."""
    return await plans.subscribe_org(admin, body, create=True)


@router.put(
    "/org/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402),
)
async def update_org_subscription(
    body: ZooProductSubscriptionsOrgRequest, admin: OrgAdmin, plans: Plans
) -> ZooProductSubscriptions:
    """Org admin: create or change the org's plan, effective at once."""
    return await plans.subscribe_org(admin, body, create=False)


@users_router.put(
    "/users/{id}/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(404),
)
async def update_subscription_for_user(
    user: AnyUser, body: ZooProductSubscriptionsUserRequest, staff: StaffUser, plans: Plans
) -> ZooProductSubscriptions:
    """Staff: change any user's plan; `id` is a user id or email address."""
    return await plans.subscribe_user(user.customer, body, staff.id, create=False)


@orgs_router.put(
    "/orgs/{id}/enterprise/pricing",
    response_model=ZooProductSubscriptions,
    responses=errors(404),
)
async def update_enterprise_pricing_for_org(
    org: AnyOrg, body: EnterpriseSubscriptionTierPrice, plans: Plans
) -> ZooProductSubscriptions:
    """Staff: set the price sales agreed with an org; returns the enterprise tier at that price."""
    enterprise = plans.catalog.plan(TierName.ENTERPRISE)
    if enterprise is None:
        raise BadRequest("the catalog offers no enterprise tier")
    await set_enterprise_price(plans.conn, org=org.customer, price=body, now=plans.now)
    return ZooProductSubscriptions.of(enterprise, body)
