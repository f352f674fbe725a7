"""The authorization matrix: every endpoint of issues 2 and 7 x every kind of caller, one test per
cell.

Callers: no token, a bad token, a plain user (in no org), a member of another org (that org's
admin, so admin-only `/org/*` calls succeed on *its own* org and must never reach the org under
test), an org member (not admin) of the org under test, that org's admin, and staff (in no
org). Success cells assert values from the body and the state they left; error cells assert
the error shape, its code and request id, and that the database is exactly as it was.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Person, World
from tests.support.billing import without_cards
from tests.support.database import dump
from tests.support.errors import assert_error
from tests.support.http import shown
from tests.support.processor import VISA, embedded, processor_customer
from zoopay.accounts import service as accounts
from zoopay.accounts.service import Org, OrgRole, TokenOwner, create_owned_token
from zoopay.db.engine import transaction
from zoopay.db.tables import (
    api_tokens,
    balances,
    ledger_entries,
    org_invitations,
    org_members,
    orgs,
    payment_customers,
    subscriptions,
    usage_thresholds,
)
from zoopay.invoicing.links import link_key
from zoopay.invoicing.service import credits_line, issue_invoice

NO_TOKEN = "no_token"
BAD_TOKEN = "bad_token"
PLAIN = "plain_user"
OTHER = "other_org_member"
MEMBER = "org_member"
ADMIN = "org_admin"
STAFF = "staff"
PRINCIPALS = (NO_TOKEN, BAD_TOKEN, PLAIN, OTHER, MEMBER, ADMIN, STAFF)

MONTHLY = "monthly_api_credits_remaining_monetary_value"
STABLE = "stable_api_credits_remaining_monetary_value"
TIER_NAMES = ["free", "pro", "team", "enterprise"]


@dataclass(frozen=True)
class Scene:
    """Who is who: the org under test ("Acme": admin + member) and another org ("Other Co")."""

    staff: Person
    plain: Person
    member: Person
    admin: Person
    other: Person
    target: Person  # the user staff endpoints act on; in no org, never a caller
    newcomer: Person  # in no org, the one POST /org/members invites
    org: Org
    other_org: Org
    engine: AsyncEngine
    member_token_id: str  # the id of the member's API token
    service_account_id: str  # the org under test's service account
    other_service_account_id: str  # the other org's
    service_account_token: str  # the secret of the org under test's service account
    invitation: str  # pending: Acme's admin invited the plain user
    # Ids an endpoint's `prepare` made (a card, a setup intent's secret), for paths and bodies.
    extras: dict[str, str] = field(default_factory=dict)

    def person(self, principal: str) -> Person | None:
        people = {
            PLAIN: self.plain,
            OTHER: self.other,
            MEMBER: self.member,
            ADMIN: self.admin,
            STAFF: self.staff,
        }
        return people.get(principal)

    def headers(self, principal: str) -> dict[str, str]:
        if principal == BAD_TOKEN:
            return {"Authorization": "Bearer zoo_this-token-was-never-issued"}
        person = self.person(principal)
        return person.headers if person else {}

    def own_org(self, principal: str) -> Org:
        """The org a caller's `/org/*` calls act on."""
        return {OTHER: self.other_org, MEMBER: self.org, ADMIN: self.org}[principal]

    def untouched_org(self, principal: str) -> Org:
        """The org that caller's `/org/*` calls must leave alone."""
        return self.org if principal == OTHER else self.other_org

    def path_args(self) -> dict[str, str]:
        return {
            "target": self.target.id,
            "org": self.org.id,
            "member": self.member.id,
            "member_token": self.member_token_id,
            "service_account": self.service_account_id,
            "invitation": self.invitation,
            **self.extras,
        }


async def build_scene(world: World, engine: AsyncEngine) -> Scene:
    staff = await world.user(staff=True)
    plain, member, admin, other, target, newcomer = [await world.user() for _ in range(6)]
    org = await world.org(admin, member, name="Acme")
    other_org = await world.org(other, name="Other Co")
    member_token = await row_of(engine, select(api_tokens).where(api_tokens.c.user_id == member.id))
    assert member_token is not None
    async with transaction(engine) as conn:
        accounts_made = [
            await create_owned_token(
                conn, owner=TokenOwner.ORG, owner_id=made.id, label="ci", now=world.clock.now
            )
            for made in (org, other_org)
        ]
        invitation = await accounts.invite(
            conn,
            org_id=org.id,
            email=plain.email,
            role=OrgRole.MEMBER,
            actor=admin.user,
            now=world.clock.now,
        )
    return Scene(
        staff,
        plain,
        member,
        admin,
        other,
        target,
        newcomer,
        org,
        other_org,
        engine,
        member_token["id"],
        accounts_made[0][0].id,
        accounts_made[1][0].id,
        accounts_made[0][1],
        invitation.id,
    )


@dataclass(frozen=True)
class Call:
    """One cell's outcome, handed to the endpoint's success check."""

    scene: Scene
    principal: str
    response: httpx.Response
    client: httpx.AsyncClient

    @property
    def caller(self) -> Person:
        person = self.scene.person(self.principal)
        assert person is not None
        return person

    @property
    def body(self) -> Any:
        return self.response.json()


Check = Callable[[Call], Awaitable[None]]
Prepare = Callable[[Scene, httpx.AsyncClient], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    expect: Mapping[str, int]
    check: Check
    body: dict[str, Any] | None = None
    prepare: Prepare | None = None
    params: dict[str, str] | None = None  # what a POST without a body takes
    # A GET that writes: the card-management link opens a session at the processor.
    writes: bool = False

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def statuses(default: int, *, public: bool = False, **by_principal: int) -> dict[str, int]:
    """Every caller gets `default` unless named; without a token it is 401 unless public."""
    table = dict.fromkeys(PRINCIPALS, default)
    if not public:
        table[NO_TOKEN] = table[BAD_TOKEN] = 401
    table.update(by_principal)
    return table


ANY_USER = statuses(200)
STAFF_ONLY = statuses(403, staff=200)
ANY_MEMBER = statuses(200, plain_user=404, staff=404)
ORG_ADMIN = statuses(200, plain_user=404, staff=404, org_member=403)
ORG_ADMIN_CREATES = statuses(201, plain_user=404, staff=404, org_member=403)
EVERYONE = statuses(200, public=True)


# --- reading state behind the API -------------------------------------------------------------


async def row_of(engine: AsyncEngine, query: Any) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
        return dict(row) if row else None


async def subscription_of(engine: AsyncEngine, customer_id: str) -> dict[str, Any] | None:
    return await row_of(
        engine, select(subscriptions).where(subscriptions.c.customer_id == customer_id)
    )


async def balance_of(engine: AsyncEngine, customer_id: str) -> dict[str, Any]:
    row = await row_of(engine, select(balances).where(balances.c.customer_id == customer_id))
    assert row is not None
    return row


async def membership_of(engine: AsyncEngine, user_id: str) -> tuple[str, str] | None:
    row = await row_of(engine, select(org_members).where(org_members.c.user_id == user_id))
    return (row["org_id"], row["role"]) if row else None


async def ledger_reasons(engine: AsyncEngine, customer_id: str) -> list[tuple[str, str, str]]:
    """(bucket, reason, actor) of a customer's ledger entries, oldest first."""
    query = (
        select(ledger_entries.c.bucket, ledger_entries.c.reason, ledger_entries.c.actor)
        .where(ledger_entries.c.customer_id == customer_id)
        .order_by(ledger_entries.c.id)
    )
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


# --- success checks, one per endpoint ---------------------------------------------------------


async def own_balance(call: Call) -> None:
    body = call.body
    assert body["map_id"] == call.caller.id
    assert body[MONTHLY] == "10.00"
    assert body["monthly_api_credits_remaining"] == 20
    assert body["subscription_details"]["modeling_app"]["name"] == "free"
    subscription = await subscription_of(call.scene.engine, call.caller.id)
    assert subscription is not None
    assert body["subscription_id"] == subscription["id"]


async def org_balance(call: Call) -> None:
    body = call.body
    assert body["map_id"] == call.scene.own_org(call.principal).id
    assert body[MONTHLY] == "0.00"
    assert body["subscription_details"] is None
    assert body["subscription_id"] is None


async def target_balance(call: Call) -> None:
    assert call.body["map_id"] == call.scene.target.id
    assert call.body[MONTHLY] == "10.00"
    assert call.body["subscription_details"]["modeling_app"]["name"] == "free"


async def target_balance_set(call: Call) -> None:
    target = call.scene.target
    body = call.body
    assert body["map_id"] == target.id
    assert (body[MONTHLY], body["monthly_api_credits_remaining"]) == ("12.34", 24)
    assert (body[STABLE], body["stable_api_credits_remaining"]) == ("5.00", 10)
    row = await balance_of(call.scene.engine, target.id)
    assert (row["monthly_micros"], row["stable_micros"]) == (12_340_000, 5_000_000)
    entries = await ledger_reasons(call.scene.engine, target.id)
    assert entries[-2:] == [
        ("monthly", "staff_change", call.scene.staff.id),
        ("stable", "staff_change", call.scene.staff.id),
    ]


async def any_org_balance(call: Call) -> None:
    assert call.body["map_id"] == call.scene.org.id
    assert call.body[MONTHLY] == "0.00"
    assert call.body["modeling_app_enterprise_price"] is None


async def any_org_balance_set(call: Call) -> None:
    body = call.body
    assert body["map_id"] == call.scene.org.id
    assert body[STABLE] == "250.50"
    assert body[MONTHLY] == "0.00"
    # No plan, so no credit price: the credits are 0 whatever the money.
    assert body["stable_api_credits_remaining"] == 0
    got = await call.client.get(
        f"/orgs/{call.scene.org.id}/payment/balance", headers=call.scene.staff.headers
    )
    assert got.json() == body
    row = await balance_of(call.scene.engine, call.scene.org.id)
    assert row["stable_micros"] == 250_500_000


async def own_subscription(call: Call) -> None:
    modeling_app = call.body["modeling_app"]
    assert modeling_app["name"] == "free"
    assert modeling_app["price"] == {"type": "flat", "interval": "month", "price": "0.00"}
    assert modeling_app["monthly_pay_as_you_go_api_credits"] == 20


async def own_subscription_became_pro(call: Call) -> None:
    modeling_app = call.body["modeling_app"]
    assert modeling_app["name"] == "pro"
    assert modeling_app["price"] == {"type": "flat", "interval": "month", "price": "49.00"}
    subscription = await subscription_of(call.scene.engine, call.caller.id)
    assert subscription is not None and subscription["tier"] == "pro"
    assert subscription["pay_annually"] is (call.response.request.method == "PUT")
    balance = await balance_of(call.scene.engine, call.caller.id)
    assert balance["monthly_micros"] == 100_000_000  # an upgrade tops up to pro's 200 credits


async def prepare_org_subscriptions(scene: Scene, client: httpx.AsyncClient) -> None:
    """The org under test on enterprise at a negotiated price; the other org on team."""
    price = {"type": "flat", "interval": "year", "price": "12000"}
    responses = [
        await client.put(
            f"/orgs/{scene.org.id}/enterprise/pricing", json=price, headers=scene.staff.headers
        ),
        await client.put(
            "/org/payment/subscriptions",
            json={"modeling_app": "enterprise"},
            headers=scene.admin.headers,
        ),
        await client.put(
            "/org/payment/subscriptions", json={"modeling_app": "team"}, headers=scene.other.headers
        ),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]


async def org_subscription(call: Call) -> None:
    modeling_app = call.body["modeling_app"]
    if call.principal == OTHER:
        assert modeling_app["name"] == "team"
        assert modeling_app["price"] == {"type": "per_user", "interval": "month", "price": "99.00"}
    else:
        assert modeling_app["name"] == "enterprise"
        assert modeling_app["price"] == {"type": "flat", "interval": "year", "price": "12000.00"}


async def org_subscribed_to_team(call: Call) -> None:
    scene, engine = call.scene, call.scene.engine
    modeling_app = call.body["modeling_app"]
    assert modeling_app["name"] == "team"
    assert modeling_app["monthly_pay_as_you_go_api_credits"] == 500
    own = scene.own_org(call.principal)
    subscription = await subscription_of(engine, own.id)
    assert subscription is not None and subscription["tier"] == "team"
    assert subscription["customer_kind"] == "org"
    assert subscription["pay_annually"] is (call.response.request.method == "PUT")
    assert (await balance_of(engine, own.id))["monthly_micros"] == 250_000_000
    assert await subscription_of(engine, scene.untouched_org(call.principal).id) is None


async def target_became_pro(call: Call) -> None:
    assert call.body["modeling_app"]["name"] == "pro"
    target = call.scene.target
    subscription = await subscription_of(call.scene.engine, target.id)
    assert subscription is not None and subscription["tier"] == "pro"
    assert (await balance_of(call.scene.engine, target.id))["monthly_micros"] == 100_000_000
    reasons = await ledger_reasons(call.scene.engine, target.id)
    assert reasons[-1] == ("monthly", "plan_change", call.scene.staff.id)


ENTERPRISE_PRICE = {"type": "per_user", "interval": "year", "price": "1200.50"}


async def enterprise_price_set(call: Call) -> None:
    modeling_app = call.body["modeling_app"]
    assert modeling_app["name"] == "enterprise"
    assert modeling_app["price"] == ENTERPRISE_PRICE
    got = await call.client.get(
        f"/orgs/{call.scene.org.id}/payment/balance", headers=call.scene.staff.headers
    )
    assert got.json()["modeling_app_enterprise_price"] == ENTERPRISE_PRICE
    # Setting a price subscribes no one.
    assert await subscription_of(call.scene.engine, call.scene.org.id) is None


async def pricing(call: Call) -> None:
    tiers = call.body["modeling_app"]
    assert [tier["name"] for tier in tiers] == TIER_NAMES
    assert tiers[1]["price"] == {"type": "flat", "interval": "month", "price": "49.00"}
    assert tiers[3]["price"] == {"type": "enterprise"}


async def org_created(call: Call) -> None:
    body = call.body
    assert body["name"] == "New Co"
    assert body["billing_email"] == call.caller.email
    assert body["id"] not in (call.scene.org.id, call.scene.other_org.id)
    assert await membership_of(call.scene.engine, call.caller.id) == (body["id"], "admin")
    balance = await balance_of(call.scene.engine, body["id"])
    assert (balance["customer_kind"], balance["monthly_micros"]) == ("org", 0)
    assert await subscription_of(call.scene.engine, body["id"]) is None


async def own_org(call: Call) -> None:
    expected = call.scene.own_org(call.principal)
    assert call.body["id"] == expected.id
    assert call.body["name"] == expected.name


async def own_org_members(call: Call) -> None:
    scene = call.scene
    expected = (
        {scene.other.id: "admin"}
        if call.principal == OTHER
        else {scene.admin.id: "admin", scene.member.id: "member"}
    )
    assert {item["id"]: item["role"] for item in call.body["items"]} == expected
    assert call.body["next_page"] is None


async def invitation_of(engine: AsyncEngine, invitation_id: str) -> dict[str, Any] | None:
    return await row_of(
        engine, select(org_invitations).where(org_invitations.c.id == invitation_id)
    )


async def member_invited(call: Call) -> None:
    """An invitation, never a membership: the newcomer stays in no org until they accept."""
    newcomer, own = call.scene.newcomer, call.scene.own_org(call.principal)
    body = call.body
    assert (body["email"], body["role"]) == (newcomer.email, "member")
    assert body["id"] != newcomer.id
    assert await membership_of(call.scene.engine, newcomer.id) is None
    invitation = await invitation_of(call.scene.engine, body["id"])
    assert invitation is not None
    assert (invitation["org_id"], invitation["email"], invitation["status"]) == (
        own.id,
        newcomer.email,
        "pending",
    )


async def org_updated(call: Call) -> None:
    own, untouched = call.scene.own_org(call.principal), call.scene.untouched_org(call.principal)
    assert (call.body["id"], call.body["name"]) == (own.id, "Renamed")
    async with call.scene.engine.connect() as conn:
        names = dict((await conn.execute(select(orgs.c.id, orgs.c.name))).all())
    assert names == {own.id: "Renamed", untouched.id: untouched.name}


async def org_deleted(call: Call) -> None:
    """Only the other org's admin, its only member, gets here: Acme has a member left."""
    assert call.response.content == b""
    async with call.scene.engine.connect() as conn:
        ids = (await conn.execute(select(orgs.c.id))).scalars().all()
    assert ids == [call.scene.org.id]
    assert await membership_of(call.scene.engine, call.caller.id) is None


async def member_got(call: Call) -> None:
    member = call.scene.member
    assert (call.body["id"], call.body["email"], call.body["role"]) == (
        member.id,
        member.email,
        "member",
    )


async def member_promoted(call: Call) -> None:
    assert (call.body["id"], call.body["role"]) == (call.scene.member.id, "admin")
    assert await membership_of(call.scene.engine, call.scene.member.id) == (
        call.scene.org.id,
        "admin",
    )


async def membership_left(call: Call) -> None:
    assert call.response.content == b""
    assert await membership_of(call.scene.engine, call.caller.id) is None


async def org_invitations_listed(call: Call) -> None:
    items = call.body["items"]
    if call.principal == OTHER:
        assert items == []
        return
    assert [(i["id"], i["email"], i["status"]) for i in items] == [
        (call.scene.invitation, call.scene.plain.email, "pending")
    ]


async def invitation_revoked(call: Call) -> None:
    assert call.response.content == b""
    invitation = await invitation_of(call.scene.engine, call.scene.invitation)
    assert invitation is not None and invitation["status"] == "revoked"


async def own_invitations(call: Call) -> None:
    items = call.body["items"]
    if call.principal != PLAIN:
        assert items == []
        return
    assert [(i["id"], i["org_id"], i["org_name"]) for i in items] == [
        (call.scene.invitation, call.scene.org.id, "Acme")
    ]


async def invitation_accepted(call: Call) -> None:
    plain = call.scene.plain
    assert (call.body["id"], call.body["role"]) == (plain.id, "member")
    assert await membership_of(call.scene.engine, plain.id) == (call.scene.org.id, "member")
    invitation = await invitation_of(call.scene.engine, call.scene.invitation)
    assert invitation is not None and invitation["status"] == "accepted"


async def invitation_declined(call: Call) -> None:
    assert (call.body["id"], call.body["status"]) == (call.scene.invitation, "declined")
    assert await membership_of(call.scene.engine, call.scene.plain.id) is None


async def member_added_by_staff(call: Call) -> None:
    newcomer = call.scene.newcomer
    assert (call.body["id"], call.body["role"]) == (newcomer.id, "member")
    assert await membership_of(call.scene.engine, newcomer.id) == (call.scene.org.id, "member")


async def member_removed(call: Call) -> None:
    assert call.response.content == b""
    assert await membership_of(call.scene.engine, call.scene.member.id) is None
    assert await membership_of(call.scene.engine, call.scene.admin.id) == (
        call.scene.org.id,
        "admin",
    )


async def token_revoked_at(engine: AsyncEngine, token_id: str) -> Any:
    row = await row_of(engine, select(api_tokens).where(api_tokens.c.id == token_id))
    assert row is not None
    return row["revoked_at"]


async def own_tokens(call: Call) -> None:
    items = call.body["items"]
    assert [(t["user_id"], t["token"], t["is_valid"]) for t in items] == [
        (call.caller.id, shown(call.caller.token), True)
    ]
    assert call.caller.token not in call.response.text


async def token_created(call: Call) -> None:
    body = call.body
    assert (body["user_id"], body["label"], body["is_valid"]) == (call.caller.id, "matrix", True)
    balance = await call.client.get(
        "/user/payment/balance", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert balance.json()["map_id"] == call.caller.id


async def member_token(call: Call) -> None:
    body = call.body
    assert (body["id"], body["user_id"]) == (call.scene.member_token_id, call.scene.member.id)
    assert (body["token"], body["is_valid"]) == (shown(call.scene.member.token), True)


async def member_token_revoked(call: Call) -> None:
    assert call.response.content == b""
    assert await token_revoked_at(call.scene.engine, call.scene.member_token_id) is not None


async def own_service_accounts(call: Call) -> None:
    scene = call.scene
    expected = (
        scene.other_service_account_id if call.principal == OTHER else scene.service_account_id
    )
    own = scene.own_org(call.principal)
    assert [(a["id"], a["org_id"], a["label"]) for a in call.body["items"]] == [
        (expected, own.id, "ci")
    ]


async def service_account_created(call: Call) -> None:
    body = call.body
    own = call.scene.own_org(call.principal)
    assert (body["org_id"], body["label"], body["is_valid"]) == (own.id, "matrix", True)
    balance = await call.client.get(
        "/org/payment/balance", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert balance.json()["map_id"] == own.id


async def service_account(call: Call) -> None:
    body = call.body
    assert (body["id"], body["org_id"]) == (call.scene.service_account_id, call.scene.org.id)
    assert body["token"].startswith("zoo_...") and len(body["token"]) == len("zoo_...") + 4


async def service_account_revoked(call: Call) -> None:
    assert call.response.content == b""
    assert await token_revoked_at(call.scene.engine, call.scene.service_account_id) is not None
    other = call.scene.other_service_account_id
    assert await token_revoked_at(call.scene.engine, other) is None


async def openapi_document(call: Call) -> None:
    body = call.body
    assert body["openapi"].startswith("3.")
    assert body["info"]["title"] == "zoopay"
    for path in ("/user/payment/balance", "/orgs/{id}/enterprise/pricing", "/org/members"):
        assert path in body["paths"]


async def alive(call: Call) -> None:
    assert call.body == {"status": "alive"}


async def ready(call: Call) -> None:
    assert call.body == {"status": "ready"}


async def swagger_ui(call: Call) -> None:
    assert call.response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in call.response.text
    assert "/openapi.json" in call.response.text
    assert "/docs/assets/swagger-ui-bundle.js" in call.response.text


async def swagger_ui_script(call: Call) -> None:
    assert call.response.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in call.response.text


# --- invoices (issue 9) --------------------------------------------------------------------------


async def prepare_invoices(scene: Scene, client: httpx.AsyncClient) -> None:
    """Everyone (and both orgs) has a visa at the processor and one open invoice of 10.00; the
    member's and Acme's invoices are named `invoice` and `org_invoice`."""
    now = scene.staff.user.created_at
    processor = embedded(scene.engine, lambda: now)
    people = [scene.plain, scene.member, scene.admin, scene.other, scene.staff]
    customers = [person.user.customer for person in people]
    customers += [scene.org.customer, scene.other_org.customer]
    for customer in customers:
        await processor_customer(scene.engine, processor, customer, now, VISA)
        async with transaction(scene.engine) as conn:
            invoice = await issue_invoice(
                conn,
                customer=customer,
                lines=[credits_line(amount_micros=10_000_000)],
                description="matrix",
                tax_rates={},
                prefix="ZP",
                now=now,
            )
            await link_key(conn, now=now)  # made on the first invoice read, once
        if customer == scene.member.user.customer:
            scene.extras["invoice"] = invoice.id
        if customer == scene.org.customer:
            scene.extras["org_invoice"] = invoice.id


async def prepare_paid_invoice(scene: Scene, client: httpx.AsyncClient) -> None:
    await prepare_invoices(scene, client)
    paid = await client.post(
        f"/user/payment/invoices/{scene.extras['invoice']}/pay", headers=scene.member.headers
    )
    assert paid.status_code == 200, paid.text


async def own_invoices(call: Call) -> None:
    [invoice] = call.body
    assert invoice["customer_id"] == call.caller.id and invoice["total"] == "10.00"


async def own_org_invoices(call: Call) -> None:
    [invoice] = call.body
    assert invoice["customer_id"] == call.scene.own_org(call.principal).id


async def member_invoice(call: Call) -> None:
    assert call.body["id"] == call.scene.extras["invoice"]
    assert call.body["status"] == "open" and call.body["can_retry_payment"] is True


async def org_invoice(call: Call) -> None:
    assert call.body["id"] == call.scene.extras["org_invoice"]
    assert call.body["customer_id"] == call.scene.org.id


async def invoice_pdf(call: Call) -> None:
    assert call.response.headers["content-type"] == "application/pdf"
    assert call.response.content.startswith(b"%PDF")


async def member_invoice_paid(call: Call) -> None:
    assert call.body["status"] == "paid" and call.body["amount_paid"] == "10.00"
    balance = await balance_of(call.scene.engine, call.scene.member.id)
    assert balance["stable_micros"] == 10_000_000


async def org_invoice_paid(call: Call) -> None:
    assert call.body["status"] == "paid"
    assert (await balance_of(call.scene.engine, call.scene.org.id))["stable_micros"] == 10_000_000


async def credits_bought(call: Call) -> None:
    assert call.body["status"] == "paid" and call.body["total"] == "5.00"
    assert call.body["customer_id"] == call.caller.id
    assert (await balance_of(call.scene.engine, call.caller.id))["stable_micros"] == 5_000_000


async def org_credits_bought(call: Call) -> None:
    own = call.scene.own_org(call.principal)
    assert call.body["customer_id"] == own.id and call.body["total"] == "5.00"
    assert (await balance_of(call.scene.engine, own.id))["stable_micros"] == 5_000_000
    untouched = call.scene.untouched_org(call.principal)
    assert (await balance_of(call.scene.engine, untouched.id))["stable_micros"] == 0


async def invoice_refunded(call: Call) -> None:
    assert call.body["amount_refunded"] == "4.00"
    assert call.body["refund_status"] == "partially_refunded"
    balance = await balance_of(call.scene.engine, call.scene.member.id)
    assert balance["stable_micros"] == 6_000_000


ORG_INVOICE = statuses(200, plain_user=404, staff=404, org_member=403, other_org_member=404)
MEMBERS_OWN = statuses(404, org_member=200)
INVOICE_ENDPOINTS = [
    Endpoint("GET", "/user/payment/invoices", ANY_USER, own_invoices, prepare=prepare_invoices),
    Endpoint("GET", "/org/payment/invoices", ORG_ADMIN, own_org_invoices, prepare=prepare_invoices),
    Endpoint(
        "GET",
        "/user/payment/invoices/{invoice}",
        MEMBERS_OWN,
        member_invoice,
        prepare=prepare_invoices,
    ),
    Endpoint(
        "GET",
        "/org/payment/invoices/{org_invoice}",
        ORG_INVOICE,
        org_invoice,
        prepare=prepare_invoices,
    ),
    Endpoint(
        "GET",
        "/user/payment/invoices/{invoice}/pdf",
        MEMBERS_OWN,
        invoice_pdf,
        prepare=prepare_invoices,
    ),
    Endpoint(
        "GET",
        "/org/payment/invoices/{org_invoice}/pdf",
        ORG_INVOICE,
        invoice_pdf,
        prepare=prepare_invoices,
    ),
    Endpoint(
        "POST",
        "/user/payment/invoices/{invoice}/pay",
        MEMBERS_OWN,
        member_invoice_paid,
        prepare=prepare_invoices,
        params={},
    ),
    Endpoint(
        "POST",
        "/org/payment/invoices/{org_invoice}/pay",
        ORG_INVOICE,
        org_invoice_paid,
        prepare=prepare_invoices,
        params={},
    ),
    Endpoint(
        "POST",
        "/user/payment/credits",
        statuses(201),
        credits_bought,
        body={"amount": "5.00"},
        prepare=prepare_invoices,
    ),
    Endpoint(
        "POST",
        "/org/payment/credits",
        ORG_ADMIN_CREATES,
        org_credits_bought,
        body={"amount": "5.00"},
        prepare=prepare_invoices,
    ),
    Endpoint(
        "POST",
        "/invoices/{invoice}/refund",
        STAFF_ONLY,
        invoice_refunded,
        body={"amount": "4.00", "idempotency_key": "matrix"},
        prepare=prepare_paid_invoice,
    ),
]


# --- payments (issue 9): billing information, cards, tax, the usage threshold ------------------

BILLING = {
    "address": {"country": "US", "zip": "94107", "city": "San Francisco"},
    "name": "Billing Name",
    "phone": "",
}
USERS = (PLAIN, OTHER, MEMBER, ADMIN, STAFF)


async def _ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def prepare_billing(scene: Scene, client: httpx.AsyncClient) -> None:
    """Every user, and both orgs (by their admins), have given billing information."""
    for principal in USERS:
        await _ok(
            await client.post("/user/payment", json=BILLING, headers=scene.headers(principal)), 201
        )
    for admin in (ADMIN, OTHER):
        await _ok(
            await client.post("/org/payment", json=BILLING, headers=scene.headers(admin)), 201
        )


async def _attach(client: httpx.AsyncClient, headers: dict[str, str], base: str) -> str:
    intent = await _ok(await client.post(f"{base}/payment/intent", headers=headers), 201)
    card = await client.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": intent["client_secret"], "payment_method": "pm_card_visa"},
    )
    method_id: str = (await _ok(card, 200))["id"]
    return method_id


async def _no_cards_on_file(scene: Scene) -> None:
    # The cells on cards count them from none: take off the card every customer here was
    # given for paid upgrades (tests/api/conftest.py).
    people = [scene.staff, scene.plain, scene.member, scene.admin, scene.other, scene.target]
    await without_cards(
        scene.engine, datetime.now(UTC), *people, scene.newcomer, scene.org, scene.other_org
    )


async def prepare_cards(scene: Scene, client: httpx.AsyncClient) -> None:
    """A card of the member's own, and one of Acme's (attached by its admin)."""
    await _no_cards_on_file(scene)
    scene.extras["member_card"] = await _attach(client, scene.member.headers, "/user")
    scene.extras["org_card"] = await _attach(client, scene.admin.headers, "/org")


async def prepare_intent(scene: Scene, client: httpx.AsyncClient) -> None:
    await _no_cards_on_file(scene)
    intent = await _ok(await client.post("/user/payment/intent", headers=scene.plain.headers), 201)
    scene.extras["client_secret"] = intent["client_secret"]


def _payer(call: Call) -> tuple[str, str]:
    """(customer id, email) of whom a call's /user or /org path acts on."""
    if call.response.request.url.path.startswith("/org/"):
        org = call.scene.own_org(call.principal)
        return org.id, org.billing_email
    return call.caller.id, call.caller.email


async def processor_id_of(engine: AsyncEngine, customer_id: str) -> str | None:
    row = await row_of(
        engine, select(payment_customers).where(payment_customers.c.customer_id == customer_id)
    )
    return row["processor_customer_id"] if row else None


async def billing_shown(call: Call) -> None:
    customer_id, email = _payer(call)
    body = call.body
    assert (body["email"], body["name"], body["balance"]) == (email, "Billing Name", "0.00")
    assert body["address"]["country"] == "US" and body["address"]["zip"] == "94107"
    assert body["id"] == await processor_id_of(call.scene.engine, customer_id)


async def billing_replaced(call: Call) -> None:
    assert (call.body["name"], call.body["address"]) == ("Renamed", None)
    assert call.body["email"] == _payer(call)[1]


async def billing_deleted(call: Call) -> None:
    assert call.response.content == b""
    customer_id, _ = _payer(call)
    row = await row_of(
        call.scene.engine,
        select(payment_customers).where(payment_customers.c.customer_id == customer_id),
    )
    assert row is not None and row["billing_info_at"] is None and row["name"] is None


async def intent_made(call: Call) -> None:
    assert set(call.body) == {"client_secret"}
    assert call.body["client_secret"].startswith("seti_")
    customer_id, _ = _payer(call)
    assert (await processor_id_of(call.scene.engine, customer_id) or "").startswith("cus_")


async def cards_listed(call: Call) -> None:
    customer_id, _ = _payer(call)
    expected = []
    if customer_id == call.scene.member.id:
        expected = [call.scene.extras["member_card"]]
    elif customer_id == call.scene.org.id:
        expected = [call.scene.extras["org_card"]]
    assert [item["id"] for item in call.body["items"]] == expected
    assert call.body["next_page"] is None


async def _cards(call: Call, base: str, headers: dict[str, str]) -> list[tuple[str, bool]]:
    listed = await call.client.get(f"{base}/payment/methods", headers=headers)
    return [(item["id"], item["card"]["last4"] == "4242") for item in listed.json()["items"]]


async def member_card_removed(call: Call) -> None:
    assert call.response.content == b""
    assert await _cards(call, "/user", call.scene.member.headers) == []
    assert await _cards(call, "/org", call.scene.admin.headers) == [
        (call.scene.extras["org_card"], True)
    ]


async def org_card_removed(call: Call) -> None:
    assert call.response.content == b""
    assert await _cards(call, "/org", call.scene.admin.headers) == []
    assert await _cards(call, "/user", call.scene.member.headers) == [
        (call.scene.extras["member_card"], True)
    ]


async def default_kept(call: Call) -> None:
    # The only card is already the default: the call answers 204 and it stays so.
    assert call.response.content == b""
    base = "/org" if call.response.request.url.path.startswith("/org/") else "/user"
    card = call.scene.extras["org_card" if base == "/org" else "member_card"]
    headers = call.scene.admin.headers if base == "/org" else call.scene.member.headers
    assert await _cards(call, base, headers) == [(card, True)]


async def portal_redirect(call: Call) -> None:
    location = call.response.headers["location"]
    assert location.startswith("/console/link?secret=zcl_")
    page = await call.client.get(location)
    assert page.status_code == 200 and "Continue" in page.text


async def tax_ready(call: Call) -> None:
    assert call.response.content == b""


async def vat_id_set(call: Call) -> None:
    assert call.body["metadata"] == {"vat_id": "DE136695976"}
    customer_id, _ = _payer(call)
    row = await row_of(
        call.scene.engine,
        select(payment_customers).where(payment_customers.c.customer_id == customer_id),
    )
    assert row is not None and row["vat_id"] == "DE136695976"


async def threshold_default(call: Call) -> None:
    assert (call.body["effective_amount"], call.body["source"]) == ("100.00", "system_default")
    assert call.body["version"] == 0


async def threshold_chosen(call: Call) -> None:
    assert (call.body["customer_amount"], call.body["source"], call.body["version"]) == (
        "20.00",
        "customer",
        1,
    )
    customer_id, _ = _payer(call)
    row = await row_of(
        call.scene.engine,
        select(usage_thresholds).where(usage_thresholds.c.customer_id == customer_id),
    )
    assert row is not None and row["customer_amount_micros"] == 20_000_000


async def threshold_reset(call: Call) -> None:
    body = call.body
    assert (body["customer_amount"], body["source"], body["version"]) == (
        None,
        "system_default",
        1,
    )


async def any_threshold(call: Call) -> None:
    assert (call.body["admin_amount"], call.body["source"], call.body["version"]) == (
        None,
        "system_default",
        0,
    )


async def any_threshold_set(call: Call) -> None:
    assert (call.body["admin_amount"], call.body["effective_amount"], call.body["source"]) == (
        "2.50",
        "2.50",
        "admin",
    )
    customer_id = call.response.request.url.path.split("/")[2]
    row = await row_of(
        call.scene.engine,
        select(usage_thresholds).where(usage_thresholds.c.customer_id == customer_id),
    )
    assert row is not None
    assert (row["admin_amount_micros"], row["customer_amount_micros"]) == (2_500_000, None)


async def any_threshold_reset(call: Call) -> None:
    # Removing an amount never set still counts as a change: the version moves.
    assert (call.body["admin_amount"], call.body["source"], call.body["version"]) == (
        None,
        "system_default",
        1,
    )


async def setup_confirmed(call: Call) -> None:
    assert call.body["card"]["last4"] == "4242" and call.body["type"] == "card"
    listed = await call.client.get("/user/payment/methods", headers=call.scene.plain.headers)
    assert [item["id"] for item in listed.json()["items"]] == [call.body["id"]]


OWN_THRESHOLD = (threshold_default, threshold_chosen, threshold_reset)
STAFFS_THRESHOLD = (any_threshold, any_threshold_set, any_threshold_reset)


def threshold_endpoints(
    whose: str,
    expect: Mapping[str, int],
    checks: tuple[Check, Check, Check],
    amount: object,
) -> list[Endpoint]:
    """The GET, PUT (of `amount`) and DELETE of the threshold under `whose` ("/user", ...),
    each checked by its own of `checks`."""
    path = f"{whose}/billing/usage-collection-threshold"
    read, chosen, reset = checks
    return [
        Endpoint("GET", path, expect, read),
        Endpoint("PUT", path, expect, chosen, body={"amount": amount, "expected_version": 0}),
        Endpoint("DELETE", path, expect, reset, params={"expected_version": "0"}),
    ]


ORG_ADMIN_NO_CONTENT = statuses(204, plain_user=404, staff=404, org_member=403)
PAYMENT_ENDPOINTS = [
    Endpoint("GET", "/user/payment", ANY_USER, billing_shown, prepare=prepare_billing),
    Endpoint("POST", "/user/payment", statuses(201), billing_shown, body=BILLING),
    Endpoint(
        "PUT",
        "/user/payment",
        ANY_USER,
        billing_replaced,
        body={"name": "Renamed"},
        prepare=prepare_billing,
    ),
    Endpoint("DELETE", "/user/payment", statuses(204), billing_deleted, prepare=prepare_billing),
    Endpoint("GET", "/org/payment", ORG_ADMIN, billing_shown, prepare=prepare_billing),
    Endpoint("POST", "/org/payment", ORG_ADMIN_CREATES, billing_shown, body=BILLING),
    Endpoint(
        "PUT",
        "/org/payment",
        ORG_ADMIN,
        billing_replaced,
        body={"name": "Renamed"},
        prepare=prepare_billing,
    ),
    Endpoint(
        "DELETE", "/org/payment", ORG_ADMIN_NO_CONTENT, billing_deleted, prepare=prepare_billing
    ),
    Endpoint("POST", "/user/payment/intent", statuses(201), intent_made),
    Endpoint("POST", "/org/payment/intent", ORG_ADMIN_CREATES, intent_made),
    Endpoint("GET", "/user/payment/methods", ANY_USER, cards_listed, prepare=prepare_cards),
    Endpoint("GET", "/org/payment/methods", ORG_ADMIN, cards_listed, prepare=prepare_cards),
    Endpoint(
        "DELETE",
        "/user/payment/methods/{member_card}",
        statuses(404, org_member=204),
        member_card_removed,
        prepare=prepare_cards,
    ),
    Endpoint(
        "POST",
        "/user/payment/methods/{member_card}/default",
        statuses(404, org_member=204),
        default_kept,
        prepare=prepare_cards,
    ),
    Endpoint(
        "DELETE",
        "/org/payment/methods/{org_card}",
        statuses(404, org_member=403, org_admin=204),
        org_card_removed,
        prepare=prepare_cards,
    ),
    Endpoint(
        "POST",
        "/org/payment/methods/{org_card}/default",
        statuses(404, org_member=403, org_admin=204),
        default_kept,
        prepare=prepare_cards,
    ),
    Endpoint(
        "GET", "/user/payment/method-portal-link", statuses(303), portal_redirect, writes=True
    ),
    Endpoint(
        "GET",
        "/org/payment/method-portal-link",
        statuses(303, plain_user=404, staff=404, org_member=403),
        portal_redirect,
        writes=True,
    ),
    Endpoint("GET", "/user/payment/tax", statuses(204), tax_ready, prepare=prepare_billing),
    Endpoint("GET", "/org/payment/tax", ORG_ADMIN_NO_CONTENT, tax_ready, prepare=prepare_billing),
    Endpoint(
        "PUT",
        "/user/payment/tax-id",
        ANY_USER,
        vat_id_set,
        body={"vat_id": "DE136695976"},
        prepare=prepare_billing,
    ),
    Endpoint(
        "PUT",
        "/org/payment/tax-id",
        ORG_ADMIN,
        vat_id_set,
        body={"vat_id": "DE136695976"},
        prepare=prepare_billing,
    ),
    *threshold_endpoints("/user", ANY_USER, OWN_THRESHOLD, "20"),
    *threshold_endpoints("/org", ORG_ADMIN, OWN_THRESHOLD, 20),
    *threshold_endpoints("/users/{target}", STAFF_ONLY, STAFFS_THRESHOLD, "2.5"),
    *threshold_endpoints("/orgs/{org}", STAFF_ONLY, STAFFS_THRESHOLD, "2.5"),
    Endpoint(
        "POST",
        "/processor/setup-intents/confirm",
        EVERYONE,
        setup_confirmed,
        body={"client_secret": "{client_secret}", "payment_method": "pm_card_visa"},
        prepare=prepare_intent,
    ),
]


ENDPOINTS = [
    Endpoint("GET", "/user/payment/balance", ANY_USER, own_balance),
    Endpoint("GET", "/org/payment/balance", ANY_MEMBER, org_balance),
    Endpoint("GET", "/users/{target}/payment/balance", STAFF_ONLY, target_balance),
    Endpoint(
        "PUT",
        "/users/{target}/payment/balance",
        STAFF_ONLY,
        target_balance_set,
        body={MONTHLY: "12.34", STABLE: 5},
    ),
    Endpoint("GET", "/orgs/{org}/payment/balance", STAFF_ONLY, any_org_balance),
    Endpoint(
        "PUT",
        "/orgs/{org}/payment/balance",
        STAFF_ONLY,
        any_org_balance_set,
        body={STABLE: "250.5"},
    ),
    Endpoint("GET", "/user/payment/subscriptions", ANY_USER, own_subscription),
    Endpoint(
        "POST",
        "/user/payment/subscriptions",
        ANY_USER,
        own_subscription_became_pro,
        body={"modeling_app": "pro"},
    ),
    Endpoint(
        "PUT",
        "/user/payment/subscriptions",
        ANY_USER,
        own_subscription_became_pro,
        body={"modeling_app": "pro", "pay_annually": True},
    ),
    Endpoint(
        "GET",
        "/org/payment/subscriptions",
        ANY_MEMBER,
        org_subscription,
        prepare=prepare_org_subscriptions,
    ),
    Endpoint(
        "POST",
        "/org/payment/subscriptions",
        ORG_ADMIN,
        org_subscribed_to_team,
        body={"modeling_app": "team"},
    ),
    Endpoint(
        "PUT",
        "/org/payment/subscriptions",
        ORG_ADMIN,
        org_subscribed_to_team,
        body={"modeling_app": "team", "pay_annually": True},
    ),
    Endpoint(
        "PUT",
        "/users/{target}/payment/subscriptions",
        STAFF_ONLY,
        target_became_pro,
        body={"modeling_app": "pro"},
    ),
    Endpoint(
        "PUT",
        "/orgs/{org}/enterprise/pricing",
        STAFF_ONLY,
        enterprise_price_set,
        body=ENTERPRISE_PRICE,
    ),
    Endpoint("GET", "/pricing/subscriptions", EVERYONE, pricing),
    Endpoint(
        "POST",
        "/org",
        # Only a caller in no org may create one.
        statuses(201, other_org_member=409, org_member=409, org_admin=409),
        org_created,
        body={"name": "New Co"},
    ),
    Endpoint("GET", "/org", ANY_MEMBER, own_org),
    Endpoint("GET", "/org/members", ORG_ADMIN, own_org_members),
    Endpoint(
        "POST",
        "/org/members",
        ORG_ADMIN_CREATES,
        member_invited,
        body={"email": "{newcomer}", "role": "member"},
    ),
    Endpoint(
        "DELETE",
        "/org/members/{member}",
        # The other org's admin asks its own org to remove someone who is not in it.
        statuses(204, plain_user=404, other_org_member=404, org_member=403, staff=404),
        member_removed,
    ),
    Endpoint("GET", "/user/api-tokens", ANY_USER, own_tokens),
    Endpoint("POST", "/user/api-tokens", statuses(201), token_created, params={"label": "matrix"}),
    # Staff included: a user's tokens are theirs alone, and another's id is as good as unknown.
    Endpoint("GET", "/user/api-tokens/{member_token}", statuses(404, org_member=200), member_token),
    Endpoint(
        "DELETE",
        "/user/api-tokens/{member_token}",
        statuses(404, org_member=204),
        member_token_revoked,
    ),
    Endpoint("GET", "/org/service-accounts", ORG_ADMIN, own_service_accounts),
    Endpoint(
        "POST",
        "/org/service-accounts",
        ORG_ADMIN_CREATES,
        service_account_created,
        params={"label": "matrix"},
    ),
    Endpoint(
        "GET",
        "/org/service-accounts/{service_account}",
        statuses(404, org_member=403, org_admin=200),
        service_account,
    ),
    Endpoint(
        "DELETE",
        "/org/service-accounts/{service_account}",
        statuses(404, org_member=403, org_admin=204),
        service_account_revoked,
    ),
    Endpoint("PUT", "/org", ORG_ADMIN, org_updated, body={"name": "Renamed"}),
    Endpoint(
        "DELETE",
        "/org",
        # Acme still has a member; the other org's admin is alone in it.
        statuses(204, plain_user=404, staff=404, org_member=403, org_admin=409),
        org_deleted,
    ),
    Endpoint(
        "GET",
        "/org/members/{member}",
        statuses(200, plain_user=404, other_org_member=404, org_member=403, staff=404),
        member_got,
    ),
    Endpoint(
        "PUT",
        "/org/members/{member}",
        statuses(200, plain_user=404, other_org_member=404, org_member=403, staff=404),
        member_promoted,
        body={"role": "admin"},
    ),
    Endpoint(
        "DELETE",
        "/org/membership",
        # Acme's admin is its last admin, with a member left; the other org's is alone.
        statuses(204, plain_user=404, staff=404, org_admin=409),
        membership_left,
    ),
    Endpoint("GET", "/org/invitations", ORG_ADMIN, org_invitations_listed),
    Endpoint(
        "DELETE",
        "/org/invitations/{invitation}",
        statuses(204, plain_user=404, other_org_member=404, org_member=403, staff=404),
        invitation_revoked,
    ),
    Endpoint("GET", "/user/org-invitations", ANY_USER, own_invitations),
    Endpoint(
        "POST",
        "/user/org-invitations/{invitation}/accept",
        statuses(404, plain_user=200),
        invitation_accepted,
    ),
    Endpoint(
        "POST",
        "/user/org-invitations/{invitation}/decline",
        statuses(404, plain_user=200),
        invitation_declined,
    ),
    Endpoint(
        "POST",
        "/orgs/{org}/members",
        statuses(403, staff=201),
        member_added_by_staff,
        body={"email": "{newcomer}", "role": "member"},
    ),
    *INVOICE_ENDPOINTS,
    *PAYMENT_ENDPOINTS,
    Endpoint("GET", "/", EVERYONE, openapi_document),
    Endpoint("GET", "/docs", EVERYONE, swagger_ui),
    Endpoint("GET", "/healthz", EVERYONE, alive),
    Endpoint("GET", "/readyz", EVERYONE, ready),
    Endpoint("GET", "/docs/assets/swagger-ui-bundle.js", EVERYONE, swagger_ui_script),
]

CELLS = [(endpoint, principal) for endpoint in ENDPOINTS for principal in PRINCIPALS]


# Actions on an invitation, a setup intent and making a card the default take no body: the
# path says everything.
NO_BODY = ("/accept", "/decline", "/intent", "/default")


def test_the_matrix_covers_every_endpoint_of_the_issue() -> None:
    assert (
        len({endpoint.name for endpoint in ENDPOINTS})
        == len(ENDPOINTS)
        == 44 + 35 + len(INVOICE_ENDPOINTS)
    )
    for endpoint in ENDPOINTS:
        assert set(endpoint.expect) == set(PRINCIPALS), endpoint.name
        if (
            endpoint.method in ("POST", "PUT")
            and endpoint.params is None
            and not endpoint.path.endswith(NO_BODY)
        ):
            assert endpoint.body is not None, endpoint.name


def _body(endpoint: Endpoint, scene: Scene) -> dict[str, Any] | None:
    if endpoint.body is None:
        return None
    args = {"newcomer": scene.newcomer.email, **scene.extras}
    return {
        key: value.format(**args) if isinstance(value, str) and "{" in value else value
        for key, value in endpoint.body.items()
    }


@pytest.mark.parametrize(
    ("endpoint", "principal"),
    CELLS,
    ids=[f"{endpoint.name} as {principal}" for endpoint, principal in CELLS],
)
async def test_authorization_cell(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    endpoint: Endpoint,
    principal: str,
) -> None:
    scene = await build_scene(world, engine)
    before, response = await call_prepared(client, scene, endpoint, scene.headers(principal))

    expected = endpoint.expect[principal]
    assert response.status_code == expected, response.text
    assert response.headers["x-api-call-id"]
    if expected >= 400:
        assert_error(response, expected)
        assert await dump(engine) == before, "a refused call changed the database"
        return
    if endpoint.method == "GET" and not endpoint.writes:
        assert await dump(engine) == before, "a read changed the database"
    await endpoint.check(Call(scene, principal, response, client))


async def call_prepared(
    client: httpx.AsyncClient, scene: Scene, endpoint: Endpoint, headers: dict[str, str]
) -> tuple[dict[str, list[dict[str, Any]]], httpx.Response]:
    """Prepare the scene for `endpoint`, then call it: the database as it was just before the
    call, and the answer."""
    if endpoint.prepare is not None:
        await endpoint.prepare(scene, client)
    before = await dump(engine=scene.engine)
    response = await client.request(
        endpoint.method,
        endpoint.path.format(**scene.path_args()),
        json=_body(endpoint, scene),
        params=endpoint.params,
        headers=headers,
    )
    return before, response


# What an org's service account may do: read its org's balance and plan, and what anyone may.
SERVICE_ACCOUNT_MAY = {
    "GET /org/payment/balance": "map_id",
    "GET /org/payment/subscriptions": "modeling_app",
    "GET /pricing/subscriptions": "modeling_app",
    "GET /": "openapi",
    "GET /docs": None,
    "GET /healthz": "status",
    "GET /readyz": "status",
    "GET /docs/assets/swagger-ui-bundle.js": None,
    # The client secret is the credential there, not a token: anyone holding it confirms.
    "POST /processor/setup-intents/confirm": "card",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.name for endpoint in ENDPOINTS])
async def test_an_org_service_account_may_only_read_its_orgs_balance_and_plan(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, endpoint: Endpoint
) -> None:
    scene = await build_scene(world, engine)
    account = {"Authorization": f"Bearer {scene.service_account_token}"}
    before, response = await call_prepared(client, scene, endpoint, account)
    if endpoint.name not in SERVICE_ACCOUNT_MAY or endpoint.method == "GET":
        assert await dump(engine) == before
    if endpoint.name not in SERVICE_ACCOUNT_MAY:
        assert_error(response, 403)
        return
    assert response.status_code == 200, response.text
    field = SERVICE_ACCOUNT_MAY[endpoint.name]
    if endpoint.name == "GET /org/payment/balance":
        assert response.json()["map_id"] == scene.org.id
    elif endpoint.name == "GET /org/payment/subscriptions":
        assert response.json()["modeling_app"]["name"] == "enterprise"  # Acme's, prepared
    elif field is not None:
        assert field in response.json()


async def test_a_refused_staff_put_leaves_the_balance_as_it_was(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """The matrix compares whole databases; this says the same in the API's own terms."""
    scene = await build_scene(world, engine)
    path = f"/users/{scene.target.id}/payment/balance"
    before = (await client.get(path, headers=scene.staff.headers)).json()
    for principal in (NO_TOKEN, BAD_TOKEN, PLAIN, OTHER, MEMBER, ADMIN):
        refused = await client.put(
            path, json={MONTHLY: "999", STABLE: "999"}, headers=scene.headers(principal)
        )
        assert_error(refused, 401 if principal in (NO_TOKEN, BAD_TOKEN) else 403)
    assert (await client.get(path, headers=scene.staff.headers)).json() == before


async def test_org_counts_do_not_move_when_members_try_to_create_orgs(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine)
    for principal in (OTHER, MEMBER, ADMIN):
        refused = await client.post(
            "/org", json={"name": "Second"}, headers=scene.headers(principal)
        )
        assert_error(refused, 409)
        person = scene.person(principal)
        assert person is not None and person.email in refused.json()["message"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(orgs))).scalar_one() == 2


# --- auth is checked before input ---------------------------------------------------------------

AUTH_BEFORE_INPUT = [
    # (caller, method, path, body, status): the input is bad too, but who asks decides first.
    (NO_TOKEN, "PUT", "/users/not-a-uuid/payment/balance", {MONTHLY: -1}, 401),
    (BAD_TOKEN, "PUT", "/orgs/{org}/payment/balance", {"monthly_api_credits": 5}, 401),
    (NO_TOKEN, "POST", "/user/payment/subscriptions", {"modeling_app": "gold"}, 401),
    (BAD_TOKEN, "DELETE", "/org/members/not-a-uuid", None, 401),
    (PLAIN, "GET", "/orgs/not-a-uuid/payment/balance", None, 403),
    (PLAIN, "PUT", "/orgs/not-a-uuid/payment/balance", {STABLE: "NaN"}, 403),
    (ADMIN, "PUT", "/users/a@b@c/payment/subscriptions", {"modeling_app": "team"}, 403),
    (MEMBER, "PUT", "/orgs/{org}/enterprise/pricing", {"type": "enterprise"}, 403),
    (MEMBER, "POST", "/org/payment/subscriptions", {"modeling_app": "pro"}, 403),
    (MEMBER, "DELETE", "/org/members/not-a-uuid", None, 403),
    (MEMBER, "POST", "/org/members", {"email": "nobody"}, 403),
    (PLAIN, "POST", "/org/members", {"email": "x", "role": "owner"}, 404),
    (STAFF, "PUT", "/org/payment/subscriptions", {"modeling_app": "free"}, 404),
    (BAD_TOKEN, "GET", "/user/api-tokens/not-a-uuid", None, 401),
    (NO_TOKEN, "POST", "/user/api-tokens?label=" + "x" * 201, None, 401),
    (MEMBER, "DELETE", "/org/service-accounts/not-a-uuid", None, 403),
    (MEMBER, "POST", "/org/service-accounts?limit=0&label=" + "x" * 201, None, 403),
    (PLAIN, "GET", "/org/service-accounts/not-a-uuid", None, 404),
    (MEMBER, "PUT", "/org/members/not-a-uuid", {"role": "owner"}, 403),
    (MEMBER, "GET", "/org/members/not-a-uuid", None, 403),
    (PLAIN, "PUT", "/org", {"name": 5}, 404),
    (MEMBER, "PUT", "/org", {"nmae": "x"}, 403),
    (MEMBER, "DELETE", "/org/invitations/not-a-uuid", None, 403),
    (ADMIN, "POST", "/orgs/not-a-uuid/members", {"email": "x"}, 403),
    (NO_TOKEN, "POST", "/user/org-invitations/not-a-uuid/accept", None, 401),
    (BAD_TOKEN, "GET", "/user/org-invitations", None, 401),
]


@pytest.mark.parametrize(
    ("principal", "method", "path", "body", "status"),
    AUTH_BEFORE_INPUT,
    ids=[f"{m} {p} as {who}" for who, m, p, _, _ in AUTH_BEFORE_INPUT],
)
async def test_auth_is_checked_before_input(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    principal: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    scene = await build_scene(world, engine)
    before = await dump(engine)
    response = await client.request(
        method, path.format(**scene.path_args()), json=body, headers=scene.headers(principal)
    )
    assert_error(response, status)
    assert await dump(engine) == before


async def test_the_post_of_an_org_member_is_refused_even_when_the_org_has_no_plan(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """An org member may read the org's plan but never choose it."""
    scene = await build_scene(world, engine)
    for method in ("POST", "PUT"):
        refused = await client.request(
            method,
            "/org/payment/subscriptions",
            json={"modeling_app": "team"},
            headers=scene.member.headers,
        )
        assert_error(refused, 403)
        assert "admin" in refused.json()["message"]
    assert await subscription_of(engine, scene.org.id) is None
    got = await client.get("/org/payment/subscriptions", headers=scene.member.headers)
    assert_error(got, 404)
