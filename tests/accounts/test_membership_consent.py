"""Membership by consent (issue 7, part 2): no one joins an org but by accepting an invitation
or by an operator's or staff's action; an admin learns nothing about which emails exist; a
member may leave; an org keeps an admin while it has members."""

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from kittycad.models import Org as SdkOrg
from kittycad.models import OrgMember as SdkOrgMember
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import START, Clock, Person, World
from tests.support.billing import ENDED, TERMS, add_card, embedded, staff_plan
from tests.support.database import dump
from tests.support.errors import assert_error
from tests.support.http import ok
from zoopay.accounts.service import INVITATION_LIFETIME, create_service_token
from zoopay.billing.run import run_billing
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.db.engine import transaction
from zoopay.db.tables import (
    balances,
    invoice_payment_attempts,
    invoices,
    ledger_entries,
    org_invitations,
    org_members,
    subscriptions,
)

# The shapes kittycad 1.2.0 accepts.
ORG_MEMBER_FIELDS = set(SdkOrgMember.model_fields)
ORG_FIELDS = set(SdkOrg.model_fields)
INVITATION_FIELDS = {
    "id",
    "org_id",
    "org_name",
    "email",
    "role",
    "status",
    "created_at",
    "updated_at",
    "expires_at",
}


async def invite(
    client: httpx.AsyncClient, admin: Person, email: str, role: str = "member"
) -> dict[str, Any]:
    body = {"email": email, "role": role}
    answer: dict[str, Any] = await ok(
        await client.post("/org/members", headers=admin.headers, json=body), 201
    )
    return answer


async def my_invitations(client: httpx.AsyncClient, person: Person) -> list[dict[str, Any]]:
    page = await ok(await client.get("/user/org-invitations", headers=person.headers))
    items: list[dict[str, Any]] = page["items"]
    return items


async def membership(engine: AsyncEngine, user_id: str) -> tuple[str, str] | None:
    query = select(org_members.c.org_id, org_members.c.role).where(org_members.c.user_id == user_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return (row[0], row[1]) if row else None


async def respond(
    client: httpx.AsyncClient, person: Person, invitation_id: str, action: str
) -> httpx.Response:
    return await client.post(
        f"/user/org-invitations/{invitation_id}/{action}", headers=person.headers
    )


# --- the attack of the issue, and the invitation flow ------------------------------------------


async def test_an_admin_cannot_move_a_user_into_their_org(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """The attack: make an org, POST the victim's email. The victim stays where they were."""
    attacker, victim = await world.user(), await world.user()
    await ok(await client.post("/org", headers=attacker.headers, json={"name": "Trap"}), 201)
    answer = await invite(client, attacker, victim.email)
    assert answer["id"] != victim.id  # the invitation's id, not the victim's
    assert await membership(engine, victim.id) is None
    assert_error(await client.get("/org", headers=victim.headers), 404, "not_found")
    assert_error(await client.get("/org/payment/balance", headers=victim.headers), 404, "not_found")
    members = await ok(await client.get("/org/members", headers=attacker.headers))
    assert [m["id"] for m in members["items"]] == [attacker.id]
    # Nor by naming the victim's id as a member to change, get or remove.
    for method in ("GET", "PUT", "DELETE"):
        body = {"role": "member"} if method == "PUT" else None
        response = await client.request(
            method, f"/org/members/{victim.id}", headers=attacker.headers, json=body
        )
        assert_error(response, 404, "not_found")
    # Nor through the staff endpoint.
    org_id = (await ok(await client.get("/org", headers=attacker.headers)))["id"]
    staff_only = await client.post(
        f"/orgs/{org_id}/members",
        headers=attacker.headers,
        json={"email": victim.email, "role": "member"},
    )
    assert_error(staff_only, 403, "forbidden")
    assert await membership(engine, victim.id) is None


async def test_an_invited_user_joins_by_accepting(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, carol = await world.user(), await world.user()
    org = await world.org(admin, name="Acme")
    answer = await invite(client, admin, carol.email.upper(), role="admin")
    assert set(answer) == ORG_MEMBER_FIELDS
    assert (answer["email"], answer["role"], answer["image"]) == (carol.email, "admin", "")
    assert answer["name"] is None
    assert datetime.fromisoformat(answer["created_at"]) == clock.now

    [listed] = await my_invitations(client, carol)
    assert set(listed) == INVITATION_FIELDS
    assert (listed["id"], listed["org_id"], listed["org_name"]) == (answer["id"], org.id, "Acme")
    assert (listed["email"], listed["role"], listed["status"]) == (carol.email, "admin", "pending")
    assert datetime.fromisoformat(listed["expires_at"]) == clock.now + INVITATION_LIFETIME
    pending = await ok(await client.get("/org/invitations", headers=admin.headers))
    assert [item["id"] for item in pending["items"]] == [answer["id"]]

    clock.advance(hours=1)
    joined = await ok(await respond(client, carol, answer["id"], "accept"))
    assert set(joined) == ORG_MEMBER_FIELDS
    assert (joined["id"], joined["email"], joined["role"]) == (carol.id, carol.email, "admin")
    assert datetime.fromisoformat(joined["created_at"]) == clock.now
    assert await membership(engine, carol.id) == (org.id, "admin")
    assert (await ok(await client.get("/org", headers=carol.headers)))["id"] == org.id
    # Accepted: no longer pending for either side, and it cannot be used twice.
    assert await my_invitations(client, carol) == []
    pending = await ok(await client.get("/org/invitations", headers=admin.headers))
    assert pending["items"] == []
    again = await respond(client, carol, answer["id"], "accept")
    assert "accepted" in assert_error(again, 409, "conflict")
    async with engine.connect() as conn:
        status = (await conn.execute(select(org_invitations.c.status))).scalars().all()
    assert status == ["accepted"]


async def test_a_declined_invitation_changes_nothing_but_itself(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, dave = await world.user(), await world.user()
    await world.org(admin)
    answer = await invite(client, admin, dave.email)
    declined = await ok(await respond(client, dave, answer["id"], "decline"))
    assert (declined["id"], declined["status"]) == (answer["id"], "declined")
    assert await membership(engine, dave.id) is None
    assert await my_invitations(client, dave) == []
    late = await respond(client, dave, answer["id"], "accept")
    assert "declined" in assert_error(late, 409, "conflict")
    assert await membership(engine, dave.id) is None


async def test_the_answer_to_an_admin_is_the_same_for_an_email_with_and_without_a_user(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, existing = await world.user(), await world.user("someone-a@example.com")
    await world.org(admin)
    nobody = "someone-b@example.com"  # the same length: nothing may differ but the letter

    answers = []
    for address in (existing.email, nobody):
        response = await client.post(
            "/org/members", headers=admin.headers, json={"email": address, "role": "member"}
        )
        answers.append(response)
    first, second = answers
    assert first.status_code == second.status_code == 201
    headers = [
        {k: v for k, v in r.headers.items() if k != "x-api-call-id"} for r in (first, second)
    ]
    assert headers[0] == headers[1]
    bodies = [dict(r.json()) for r in answers]
    assert bodies[0].pop("email") == existing.email
    assert bodies[1].pop("email") == nobody
    ids = [body.pop("id") for body in bodies]
    assert len(set(ids)) == 2 and existing.id not in ids
    assert bodies[0] == bodies[1]
    # The admin's listing of pending invitations does not tell them apart either.
    pending = await ok(await client.get("/org/invitations", headers=admin.headers))
    listed = [dict(item) for item in pending["items"]]
    for item in listed:
        del item["id"], item["email"]
    assert listed[0] == listed[1]
    # A user who is in another org already looks the same as well.
    other_admin, taken = await world.user(), await world.user("someone-c@example.com")
    await world.org(other_admin, taken, name="Other")
    third = await client.post(
        "/org/members", headers=admin.headers, json={"email": taken.email, "role": "member"}
    )
    third_body = dict(third.json())
    del third_body["id"], third_body["email"]
    assert (third.status_code, third_body) == (201, bodies[0])


async def test_an_invitation_to_an_email_without_a_user_waits_for_them(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    org = await world.org(admin)
    address = f"later-{uuid.uuid4().hex[:8]}@example.com"
    answer = await invite(client, admin, address)
    newcomer = await world.user(address)
    [listed] = await my_invitations(client, newcomer)
    assert listed["id"] == answer["id"]
    await ok(await respond(client, newcomer, answer["id"], "accept"))
    assert await membership(engine, newcomer.id) == (org.id, "member")


async def test_inviting_again_renews_the_one_pending_invitation(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, erin = await world.user(), await world.user()
    await world.org(admin)
    first = await invite(client, admin, erin.email)
    clock.advance(days=10)
    second = await invite(client, admin, erin.email, role="admin")
    assert second["id"] == first["id"]
    assert second["created_at"] == first["created_at"]
    assert datetime.fromisoformat(second["updated_at"]) == clock.now
    [listed] = await my_invitations(client, erin)
    assert listed["role"] == "admin"
    assert datetime.fromisoformat(listed["expires_at"]) == clock.now + INVITATION_LIFETIME
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(org_invitations))).scalar()
    assert count == 1


async def test_an_expired_invitation_cannot_be_accepted(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, fay = await world.user(), await world.user()
    await world.org(admin)
    answer = await invite(client, admin, fay.email)
    clock.advance(seconds=INVITATION_LIFETIME.total_seconds())
    assert await my_invitations(client, fay) == []
    before = await dump(engine)
    late = await respond(client, fay, answer["id"], "accept")
    assert "expired" in assert_error(late, 409, "conflict")
    assert await dump(engine) == before
    # The admin still sees it, and inviting again renews it.
    pending = await ok(await client.get("/org/invitations", headers=admin.headers))
    assert [item["id"] for item in pending["items"]] == [answer["id"]]
    await invite(client, admin, fay.email)
    await ok(await respond(client, fay, answer["id"], "accept"))


async def test_only_the_invited_user_may_answer_an_invitation(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, gus, mallory = await world.user(), await world.user(), await world.user()
    await world.org(admin)
    answer = await invite(client, admin, gus.email)
    before = await dump(engine)
    for action in ("accept", "decline"):
        for who in (mallory, admin):
            stolen = await respond(client, who, answer["id"], action)
            assert_error(stolen, 404, "not_found")
    assert_error(await respond(client, mallory, "not-a-uuid", "accept"), 400, "bad_request")
    assert_error(await respond(client, mallory, str(uuid.uuid4()), "accept"), 404, "not_found")
    assert await my_invitations(client, mallory) == []
    assert await dump(engine) == before


async def test_a_user_in_an_org_must_leave_it_before_accepting(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, other_admin, hal = await world.user(), await world.user(), await world.user()
    await world.org(admin)
    other = await world.org(other_admin, hal, name="Other")
    answer = await invite(client, admin, hal.email)
    before = await dump(engine)
    busy = await respond(client, hal, answer["id"], "accept")
    assert "already belongs" in assert_error(busy, 409, "conflict")
    assert await dump(engine) == before
    assert await membership(engine, hal.id) == (other.id, "member")

    assert (await client.delete("/org/membership", headers=hal.headers)).status_code == 204
    await ok(await respond(client, hal, answer["id"], "accept"))
    assert (await membership(engine, hal.id))[0] != other.id  # type: ignore[index]


async def test_an_admin_revokes_a_pending_invitation(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, ivy, other_admin = await world.user(), await world.user(), await world.user()
    await world.org(admin)
    await world.org(other_admin, name="Other")
    answer = await invite(client, admin, ivy.email)
    path = f"/org/invitations/{answer['id']}"
    assert_error(await client.delete(path, headers=other_admin.headers), 404, "not_found")
    assert_error(await client.delete(path, headers=ivy.headers), 404, "not_found")
    revoked = await client.delete(path, headers=admin.headers)
    assert (revoked.status_code, revoked.content) == (204, b"")
    assert await my_invitations(client, ivy) == []
    late = await respond(client, ivy, answer["id"], "accept")
    assert "revoked" in assert_error(late, 409, "conflict")
    assert_error(await client.delete(path, headers=admin.headers), 409, "conflict")
    assert await membership(engine, ivy.id) is None


async def test_staff_and_the_operator_add_directly(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff, admin, jo, kim = [await world.user(staff=i == 0) for i in range(4)]
    org = await world.org(admin)
    added = await ok(
        await client.post(
            f"/orgs/{org.id}/members",
            headers=staff.headers,
            json={"email": jo.email, "role": "admin"},
        ),
        201,
    )
    assert set(added) == ORG_MEMBER_FIELDS
    assert (added["id"], added["role"]) == (jo.id, "admin")
    assert await membership(engine, jo.id) == (org.id, "admin")
    again = await client.post(
        f"/orgs/{org.id}/members", headers=staff.headers, json={"email": jo.email, "role": "member"}
    )
    assert_error(again, 409, "conflict")
    body = {"email": kim.email, "role": "member"}
    unknown = await client.post(f"/orgs/{uuid.uuid4()}/members", headers=staff.headers, json=body)
    assert_error(unknown, 404, "not_found")
    malformed = await client.post("/orgs/nope/members", headers=staff.headers, json=body)
    assert "org id" in assert_error(malformed, 400, "bad_request")
    nobody = {"email": "nobody-at-all@example.com", "role": "member"}
    missing = await client.post(f"/orgs/{org.id}/members", headers=staff.headers, json=nobody)
    assert_error(missing, 404, "not_found")
    assert await membership(engine, kim.id) is None


# --- leaving, roles, the last admin ------------------------------------------------------------


async def test_a_member_leaves(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, lea = await world.user(), await world.user()
    org = await world.org(admin, lea)
    left = await client.delete("/org/membership", headers=lea.headers)
    assert (left.status_code, left.content) == (204, b"")
    assert await membership(engine, lea.id) is None
    assert_error(await client.get("/org", headers=lea.headers), 404, "not_found")
    assert_error(await client.delete("/org/membership", headers=lea.headers), 404, "not_found")
    assert await membership(engine, admin.id) == (org.id, "admin")


async def test_the_last_admin_may_not_leave_an_org_with_members(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, max_ = await world.user(), await world.user()
    org = await world.org(admin, max_)
    before = await dump(engine)
    refused = await client.delete("/org/membership", headers=admin.headers)
    assert "admin" in assert_error(refused, 409, "conflict")
    assert await dump(engine) == before
    # Once another is admin, the first may go; and the last one, alone, may go too.
    path = f"/org/members/{max_.id}"
    await ok(await client.put(path, headers=admin.headers, json={"role": "admin"}))
    assert (await client.delete("/org/membership", headers=admin.headers)).status_code == 204
    assert (await client.delete("/org/membership", headers=max_.headers)).status_code == 204
    assert await membership(engine, max_.id) is None
    async with engine.connect() as conn:
        query = select(func.count()).select_from(org_members)
        assert (await conn.execute(query)).scalar() == 0
    # The org is left empty with its balance; staff can still reach it and add someone.
    staff, newcomer = await world.user(staff=True), await world.user()
    body = {"email": newcomer.email, "role": "admin"}
    await ok(await client.post(f"/orgs/{org.id}/members", headers=staff.headers, json=body), 201)


async def test_a_role_change_takes_effect_at_once(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, ned = await world.user(), await world.user()
    org = await world.org(admin, ned)
    path = f"/org/members/{ned.id}"
    assert_error(await client.get("/org/members", headers=ned.headers), 403, "forbidden")
    got = await ok(await client.get(path, headers=admin.headers))
    assert set(got) == ORG_MEMBER_FIELDS
    assert (got["id"], got["email"], got["role"]) == (ned.id, ned.email, "member")

    clock.advance(minutes=5)
    promoted = await ok(await client.put(path, headers=admin.headers, json={"role": "admin"}))
    assert (promoted["id"], promoted["role"]) == (ned.id, "admin")
    assert datetime.fromisoformat(promoted["updated_at"]) == clock.now
    assert await membership(engine, ned.id) == (org.id, "admin")
    await ok(await client.get("/org/members", headers=ned.headers))  # the very next request

    demoted = await ok(
        await client.put(f"/org/members/{admin.id}", headers=ned.headers, json={"role": "member"})
    )
    assert demoted["role"] == "member"
    assert_error(await client.get("/org/members", headers=admin.headers), 403, "forbidden")
    before = await dump(engine)
    last = await client.put(path, headers=ned.headers, json={"role": "member"})
    assert "admin" in assert_error(last, 409, "conflict")
    assert await dump(engine) == before


async def test_members_of_other_orgs_are_out_of_reach(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin, other_admin, oz = await world.user(), await world.user(), await world.user()
    await world.org(admin)
    await world.org(other_admin, oz, name="Other")
    before = await dump(engine)
    for method, body in (("GET", None), ("PUT", {"role": "admin"}), ("DELETE", None)):
        response = await client.request(
            method, f"/org/members/{oz.id}", headers=admin.headers, json=body
        )
        assert_error(response, 404, "not_found")
    assert await dump(engine) == before


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    first, second = await world.user(), await world.user()
    org = await world.org(first, second)
    await ok(
        await client.put(f"/org/members/{second.id}", headers=first.headers, json={"role": "admin"})
    )
    results = await asyncio.gather(
        client.put(f"/org/members/{second.id}", headers=first.headers, json={"role": "member"}),
        client.put(f"/org/members/{first.id}", headers=second.headers, json={"role": "member"}),
    )
    assert sorted(r.status_code for r in results) in ([200, 403], [200, 409])
    roles = [await membership(engine, person.id) for person in (first, second)]
    assert sorted(role for _, role in roles) == ["admin", "member"]  # type: ignore[misc]
    assert {org_id for org_id, _ in roles} == {org.id}  # type: ignore[misc]


async def test_accepting_two_invitations_at_once_joins_one_org(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admins = [await world.user(), await world.user()]
    pia = await world.user()
    orgs = [await world.org(admin, name=f"Org {i}") for i, admin in enumerate(admins)]
    answers = [await invite(client, admin, pia.email) for admin in admins]
    results = await asyncio.gather(
        *(respond(client, pia, answer["id"], "accept") for answer in answers)
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    joined = await membership(engine, pia.id)
    assert joined is not None and joined[0] in {org.id for org in orgs}


# --- the org itself ----------------------------------------------------------------------------


async def test_put_org_changes_what_was_sent(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    admin, member = await world.user(), await world.user()
    await world.org(admin, member, name="Old Name")
    clock.advance(minutes=1)
    body = {"name": "New Name", "billing_email": "Pay@New.example", "phone": "+1 555 0100"}
    changed = await ok(await client.put("/org", headers=admin.headers, json=body))
    assert set(changed) == ORG_FIELDS
    assert (changed["name"], changed["billing_email"], changed["phone"]) == (
        "New Name",
        "pay@new.example",
        "+1 555 0100",
    )
    assert datetime.fromisoformat(changed["updated_at"]) == clock.now
    # What the SDK sends for an unset field (null, and "" for phone) leaves it alone.
    sdk_like = {
        "name": None,
        "billing_email": None,
        "domain": "new.example",
        "image": None,
        "phone": "",
        "allow_users_in_domain_to_auto_join": None,
    }
    again = await ok(await client.put("/org", headers=admin.headers, json=sdk_like))
    assert (again["name"], again["phone"], again["domain"]) == (
        "New Name",
        "+1 555 0100",
        "new.example",
    )
    assert await ok(await client.get("/org", headers=member.headers)) == again
    refused = await client.put("/org", headers=member.headers, json={"name": "Mine"})
    assert_error(refused, 403, "forbidden")
    assert (await ok(await client.get("/org", headers=admin.headers)))["name"] == "New Name"


async def _org_rows(engine: AsyncEngine, org_id: str) -> tuple[int, int, int]:
    """(subscriptions, balances, ledger entries) of the org."""
    async with engine.connect() as conn:
        counts = []
        for table in (subscriptions, balances, ledger_entries):
            query = select(func.count()).select_from(table).where(table.c.customer_id == org_id)
            counts.append(int((await conn.execute(query)).scalar_one()))
    return counts[0], counts[1], counts[2]


async def test_delete_org_only_when_alone_and_owing_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff, admin, member = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin, member)
    plan = {"modeling_app": "team"}
    await ok(await client.put("/org/payment/subscriptions", headers=admin.headers, json=plan))

    assert_error(await client.delete("/org", headers=member.headers), 403, "forbidden")
    before = await dump(engine)
    with_members = await client.delete("/org", headers=admin.headers)
    assert "1 other member" in assert_error(with_members, 409, "conflict")
    assert await dump(engine) == before

    removed = await client.delete(f"/org/members/{member.id}", headers=admin.headers)
    assert removed.status_code == 204
    balance_path = f"/orgs/{org.id}/payment/balance"
    stable = {"stable_api_credits_remaining_monetary_value": "5"}
    await ok(await client.put(balance_path, headers=staff.headers, json=stable))
    before = await dump(engine)
    holding = await client.delete("/org", headers=admin.headers)
    assert "$5.00 of stable credits" in assert_error(holding, 409, "conflict")
    assert await dump(engine) == before

    stable = {"stable_api_credits_remaining_monetary_value": "0"}
    await ok(await client.put(balance_path, headers=staff.headers, json=stable))
    entries = (await _org_rows(engine, org.id))[2]
    deleted = await client.delete("/org", headers=admin.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert_error(await client.get("/org", headers=admin.headers), 404, "not_found")
    assert_error(await client.get(balance_path, headers=staff.headers), 404, "not_found")
    # The plan ended; the balance and its ledger stay as the record.
    assert await _org_rows(engine, org.id) == (0, 1, entries)
    assert await membership(engine, admin.id) is None
    await ok(await client.post("/org", headers=admin.headers, json={"name": "Again"}), 201)


async def test_delete_org_refused_while_money_is_due(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    await world.org(admin)
    # An org without a plan has no credits: a reported call becomes money due.
    service = await _service_headers(engine, world)
    call = {
        "id": str(uuid.uuid4()),
        "user_id": admin.id,
        "endpoint": "/file/conversion",
        "method": "POST",
        "status_code": 200,
        "started_at": (world.clock.now + timedelta(seconds=1)).isoformat(),
        "completed_at": (world.clock.now + timedelta(seconds=1)).isoformat(),
        "price": "2.5",
    }
    await ok(await client.post("/api-calls", headers=service, json=call), 201)
    before = await dump(engine)
    owing = await client.delete("/org", headers=admin.headers)
    assert "owes $2.50" in assert_error(owing, 409, "conflict")
    assert await dump(engine) == before


async def _service_headers(engine: AsyncEngine, world: World) -> dict[str, str]:
    async with transaction(engine) as conn:
        token = await create_service_token(conn, service_name="product", now=world.clock.now)
    return {"Authorization": f"Bearer {token}"}


async def test_the_same_invitation_sent_at_once_is_one_invitation(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    admin = await world.user()
    await world.org(admin)
    address = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": address, "role": "member"}
    answers = await asyncio.gather(
        *(client.post("/org/members", headers=admin.headers, json=body) for _ in range(5))
    )
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(org_invitations))).scalar()
    assert count == 1


async def test_delete_org_refused_while_an_invoice_is_unpaid(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock, catalog: Catalog
) -> None:
    """Only total_due was looked at: an org whose period fee was billed and not paid (a
    declined card, dunning under way) was deleted, and dunning went on charging its card for
    the period of a plan the deletion had ended."""
    admin = await world.user()
    org = await world.org(admin)
    await staff_plan(engine, catalog, org.customer, TierName.TEAM, START)
    declining = "pm_card_chargeCustomerFail"
    await add_card(engine, embedded(engine, Clock(START)), org.customer, START, declining)
    clock.now = ENDED
    run = await run_billing(engine, catalog, embedded(engine, clock), TERMS, at=ENDED)
    assert (run.invoiced, run.failed) == (1, 1)
    async with engine.connect() as conn:
        query = select(invoices.c.number, invoices.c.status)
        [(number, status)] = (await conn.execute(query)).all()
    assert status == "open"
    before = await dump(engine)
    refused = await client.delete("/org", headers=admin.headers)
    assert f"invoice {number} is unpaid" in assert_error(refused, 409, "conflict")
    assert await dump(engine) == before
    assert (await ok(await client.get("/org", headers=admin.headers)))["id"] == org.id
    async with engine.connect() as conn:
        attempts = await conn.execute(select(func.count()).select_from(invoice_payment_attempts))
        assert attempts.scalar_one() == 1


async def test_an_email_with_a_lone_surrogate_is_a_400_that_changes_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """JSON may escape a lone surrogate (`\\ud800`), which no database can store: each place an
    email address comes in refuses it as it refuses any other non-address."""
    staff, admin = await world.user(staff=True), await world.user()
    org = await world.org(admin)
    before = await dump(engine)
    email = b'"a\\ud800@example.com"'
    for path, headers, body in (
        ("/org/members", admin.headers, b'{"email": %s, "role": "member"}' % email),
        (f"/orgs/{org.id}/members", staff.headers, b'{"email": %s, "role": "member"}' % email),
    ):
        message = assert_error(await client.post(path, headers=headers, content=body), 400)
        assert "is not an email address" in message
    changed = await client.put(
        "/org", headers=admin.headers, content=b'{"billing_email": %s}' % email
    )
    assert "is not an email address" in assert_error(changed, 400)
    assert await dump(engine) == before
    assert (await ok(await client.get("/org", headers=admin.headers)))[
        "billing_email"
    ] == admin.email


async def test_no_one_joins_an_org_left_without_an_admin_but_as_its_admin(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """An org keeps an admin while it has members: once its last admin left it empty, an
    invitation they made as member would fill it with people no one can run it for; one as
    admin hands it over."""
    admin, bob, carol = await world.user(), await world.user(), await world.user()
    org = await world.org(admin)
    to_bob = await invite(client, admin, bob.email, "member")
    to_carol = await invite(client, admin, carol.email, "admin")
    assert (await client.delete("/org/membership", headers=admin.headers)).status_code == 204

    before = await dump(engine)
    refused = await respond(client, bob, to_bob["id"], "accept")
    assert "admin" in assert_error(refused, 409, "conflict")
    assert await dump(engine) == before
    assert await membership(engine, bob.id) is None

    await ok(await respond(client, carol, to_carol["id"], "accept"))
    assert await membership(engine, carol.id) == (org.id, "admin")
    await ok(await respond(client, bob, to_bob["id"], "accept"))
    assert await membership(engine, bob.id) == (org.id, "member")
