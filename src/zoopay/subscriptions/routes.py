from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
from zoopay.api.routing import Endpoint, Twins, for_user_and_org, json_router
from zoopay.billing.upgrades import PlanChange, change_plan_paid
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


async def user_plan_change(
    body: ZooProductSubscriptionsUserRequest, user: CurrentUser
) -> PlanChange:
    return PlanChange(user.customer, _user_tier(body), body.pay_annually, user.id)


async def org_plan_change(body: ZooProductSubscriptionsOrgRequest, admin: OrgAdmin) -> PlanChange:
    return PlanChange(admin.org, _org_tier(body), body.pay_annually, admin.user_id)


# A user asks for their own plan, an org's admin for the org's, each in kittycad's body.
PLAN_CHANGES = Twins(
    "asked",
    Annotated[PlanChange, Depends(user_plan_change)],
    Annotated[PlanChange, Depends(org_plan_change)],
)


@dataclass(frozen=True)
class PlanDesk:
    """What a customer's own plan change works with. No request transaction is held: an
    upgrade is charged first (zoopay.billing.upgrades), and the processor is called between
    the change's own transactions."""

    request: Request
    engine: AsyncEngine
    catalog: Catalog
    now: datetime

    async def subscribe(self, asked: PlanChange, *, create_only: bool) -> ZooProductSubscriptions:
        await change_plan_paid(
            self.engine,
            catalog=self.catalog,
            processor=self.request.app.state.processor,
            terms=self.request.app.state.change_terms,
            change=asked,
            now=self.now,
            create_only=create_only,
        )
        async with reading(self.engine) as conn:
            return await plan_of(conn, catalog=self.catalog, customer=asked.customer)


async def plan_desk(request: Request, engine: Engine, catalog: CatalogDep, now: Now) -> PlanDesk:
    return PlanDesk(request, engine, catalog, now)


Plans = Annotated[PlanDesk, Depends(plan_desk)]


def _plan_change(route: str) -> Callable[[Endpoint], Endpoint]:
    """A change of a user's own plan and, the same, of an org's by its admin: the answer is
    the plan after the change; 402 when an upgrade's charge fails, 409 on a conflicting one."""
    return for_user_and_org(
        router,
        route,
        PLAN_CHANGES,
        response_model=ZooProductSubscriptions,
        responses=errors(402, 409),
    )


@router.get("/user/payment/subscriptions", response_model=ZooProductSubscriptions)
async def get_user_subscription(
    user: CurrentUser, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The caller's plan."""
    return await plan_of(conn, catalog=catalog, customer=user.customer)


@router.get(
    "/org/payment/subscriptions", response_model=ZooProductSubscriptions, responses=errors(404)
)
async def get_org_subscription(
    org: OrgReader, conn: Conn, catalog: CatalogDep
) -> ZooProductSubscriptions:
    """The plan of the caller's org (a member's, or an org service account's); 404 until it
    has one."""
    return await plan_of(conn, catalog=catalog, customer=org)


@_plan_change("POST /{who}/payment/subscriptions")
async def create_who_subscription(asked: PlanChange, plans: Plans) -> ZooProductSubscriptions:
    """Subscribe the caller; 409 if they already have a paid plan.

    Org admin: subscribe the org; 409 if it already has a paid plan."""
    return await plans.subscribe(asked, create_only=True)


@_plan_change("PUT /{who}/payment/subscriptions")
async def update_who_subscription(asked: PlanChange, plans: Plans) -> ZooProductSubscriptions:
    """Change the caller's plan, effective at once.

    Org admin: create or change the org's plan, effective at once."""
    return await plans.subscribe(asked, create_only=False)


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
