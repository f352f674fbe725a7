from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.accounts.service import Membership
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


async def plan_of(
    conn: AsyncConnection, *, catalog: Catalog, customer: Customer
) -> ZooProductSubscriptions:
    subscription = await get_subscription(conn, customer=customer)
    subscribed = await subscription_details(conn, catalog=catalog, subscription=subscription)
    if subscribed is None:
        raise NotFound(f"this {customer.kind} has no subscription")
    return ZooProductSubscriptions.of(subscribed.plan, subscribed.price)


def _user_tier(body: ZooProductSubscriptionsUserRequest) -> TierName:
    return TierName(body.modeling_app or IndividualTierName.FREE)


def _org_tier(body: ZooProductSubscriptionsOrgRequest) -> TierName:
    return TierName(body.modeling_app or OrganizationTierName.TEAM)


@dataclass(frozen=True)
class PlanDesk:
    """What a customer's own plan change works with. No request transaction is held: an
    upgrade is charged first (zoopay.billing.upgrades), and the processor is called between
    the change's own transactions."""

    request: Request
    engine: AsyncEngine
    catalog: Catalog
    now: datetime

    async def subscribe(
        self,
        customer: Customer,
        *,
        tier: TierName,
        pay_annually: bool | None,
        actor: str,
        create_only: bool,
    ) -> ZooProductSubscriptions:
        await change_plan_paid(
            self.engine,
            catalog=self.catalog,
            processor=self.request.app.state.processor,
            terms=self.request.app.state.change_terms,
            customer=customer,
            tier=tier,
            pay_annually=pay_annually,
            actor=actor,
            now=self.now,
            create_only=create_only,
        )
        async with reading(self.engine) as conn:
            return await plan_of(conn, catalog=self.catalog, customer=customer)

    async def subscribe_user(
        self, user: Customer, body: ZooProductSubscriptionsUserRequest, *, create: bool
    ) -> ZooProductSubscriptions:
        return await self.subscribe(
            user,
            tier=_user_tier(body),
            pay_annually=body.pay_annually,
            actor=user.id,
            create_only=create,
        )

    async def subscribe_org(
        self, admin: Membership, body: ZooProductSubscriptionsOrgRequest, *, create: bool
    ) -> ZooProductSubscriptions:
        return await self.subscribe(
            admin.org,
            tier=_org_tier(body),
            pay_annually=body.pay_annually,
            actor=admin.user_id,
            create_only=create,
        )


async def plan_desk(request: Request, engine: Engine, catalog: CatalogDep, now: Now) -> PlanDesk:
    return PlanDesk(request, engine, catalog, now)


Plans = Annotated[PlanDesk, Depends(plan_desk)]


@router.get("/user/payment/subscriptions", response_model=ZooProductSubscriptions)
async def get_user_subscription(
    user: CurrentUser, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The caller's plan."""
    return await plan_of(conn, catalog=catalog, customer=user.customer)


@router.post(
    "/user/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def create_user_subscription(
    body: ZooProductSubscriptionsUserRequest, user: CurrentUser, plans: Plans
) -> ZooProductSubscriptions:
    """Subscribe the caller; 409 if they already have a paid plan."""
    return await plans.subscribe_user(user.customer, body, create=True)


@router.put(
    "/user/payment/subscriptions",
    response_model=ZooProductSubscriptions,
    responses=errors(402, 409),
)
async def update_user_subscription(
    body: ZooProductSubscriptionsUserRequest, user: CurrentUser, plans: Plans
) -> ZooProductSubscriptions:
    """Change the caller's plan, effective at once."""
    return await plans.subscribe_user(user.customer, body, create=False)


@router.get(
    "/org/payment/subscriptions", response_model=ZooProductSubscriptions, responses=errors(404)
)
async def get_org_subscription(
    org: OrgReader, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The plan of the caller's org (a member's, or an org service account's); 404 until it
    has one."""
    return await plan_of(conn, catalog=catalog, customer=org)


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
    responses=errors(402, 409),
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
        conn,
        catalog=catalog,
        customer=user.customer,
        tier=_user_tier(body),
        pay_annually=body.pay_annually,
        actor=staff.id,
        now=now,
    )
    return await plan_of(conn, catalog=catalog, customer=user.customer)


@orgs_router.put(
    "/orgs/{id}/enterprise/pricing",
    response_model=ZooProductSubscriptions,
    responses=errors(404),
)
async def update_enterprise_pricing_for_org(
    org: AnyOrg, body: EnterpriseSubscriptionTierPrice, conn: Conn, catalog: CatalogDep, now: Now
) -> ZooProductSubscriptions:
    """Staff: set the price sales agreed with an org; returns the enterprise tier at that price."""
    enterprise = catalog.plan(TierName.ENTERPRISE)
    if enterprise is None:
        raise BadRequest("the catalog offers no enterprise tier")
    await set_enterprise_price(conn, org=org.customer, price=body, now=now)
    return ZooProductSubscriptions.of(enterprise, body)
