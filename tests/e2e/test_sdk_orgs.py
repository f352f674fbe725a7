"""Orgs and their members on the live server through kittycad 1.2.0. `create_org_member`
invites; the invited user joins by accepting (a zoopay extension, driven over HTTP)."""

import uuid
from itertools import islice

import httpx
from kittycad.models import AddOrgMember, OrgDetails, UpdateMemberToOrgBody
from kittycad.models.created_at_sort_mode import CreatedAtSortMode
from kittycad.models.user_org_role import UserOrgRole

from tests.e2e.conftest import Account, People

# Reading stops here even if a broken server kept handing out next pages.
PAGE_BOUND = 10


def accept(http: httpx.Client, person: Account, invitation_id: str) -> None:
    accepted = http.post(f"/user/org-invitations/{invitation_id}/accept", headers=person.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["id"] == person.id


def add(admin: Account, http: httpx.Client, person: Account, role: UserOrgRole) -> None:
    invited = admin.sdk.orgs.create_org_member(body=AddOrgMember(email=person.email, role=role))
    accept(http, person, str(invited.id))


def test_create_org_then_get_it(people: People, http: httpx.Client) -> None:
    staff, admin = people.user(staff=True), people.user()

    created = admin.sdk.orgs.create_org(
        body=OrgDetails(name="Acme Robotics", domain="acme.example", phone="+1 555 0100")
    )
    assert str(uuid.UUID(created.id)) == created.id
    assert (created.name, created.domain, created.phone) == (
        "Acme Robotics",
        "acme.example",
        "+1 555 0100",
    )
    assert created.billing_email == admin.email  # defaults to the creator's

    got = admin.sdk.orgs.get_org()
    assert (got.id, got.name, got.billing_email) == (created.id, "Acme Robotics", admin.email)
    assert got.created_at == created.created_at

    # A new org has a zero balance and no plan, seen alike by its admin and by staff.
    own = admin.sdk.payments.get_payment_balance_for_org()
    by_staff = staff.sdk.payments.get_payment_balance_for_any_org(id=created.id)
    for balance in (own, by_staff):
        assert balance.map_id == created.id
        assert balance.subscription_details is None
        assert balance.monthly_api_credits_remaining_monetary_value == 0.0
        assert balance.stable_api_credits_remaining_monetary_value == 0.0

    second = http.post("/org", headers=admin.headers, json={"name": "Another"})
    assert second.status_code == 409
    assert second.json()["error_code"] == "conflict"


def test_members_are_added_and_listed_page_by_page(people: People, http: httpx.Client) -> None:
    admin, *others = people.users(5)
    orgs = admin.sdk.orgs
    orgs.create_org(body=OrgDetails(name="Five"))

    for other in others:
        invited = orgs.create_org_member(
            body=AddOrgMember(email=other.email, role=UserOrgRole.MEMBER)
        )
        # An invitation in OrgMember's shape: its own id, the email, the role offered.
        assert (invited.email, invited.role) == (other.email, "member")
        assert str(invited.id) != other.id
        assert http.get("/org", headers=other.headers).status_code == 404  # not in yet
        accept(http, other, str(invited.id))
    everyone = [admin, *others]

    # The SDK's iterator follows next_page over pages of 2: every member once, in order.
    listed = list(islice(orgs.list_org_members(limit=2), PAGE_BOUND))
    assert [member.id for member in listed] == [person.id for person in everyone]
    assert [member.email for member in listed] == [person.email for person in everyone]
    assert [member.role for member in listed] == ["admin"] + ["member"] * 4

    newest_first = list(
        islice(
            orgs.list_org_members(limit=2, sort_by=CreatedAtSortMode.CREATED_AT_DESCENDING),
            PAGE_BOUND,
        )
    )
    assert [member.id for member in newest_first] == [person.id for person in reversed(everyone)]

    # The pages themselves: 2, 2, 1, and no next page after the last.
    sizes, token = [], None
    for _ in range(PAGE_BOUND):
        params = {"limit": 2, **({"page_token": token} if token else {})}
        page = http.get("/org/members", headers=admin.headers, params=params).json()
        sizes.append(len(page["items"]))
        token = page["next_page"]
        if token is None:
            break
    assert (sizes, token) == ([2, 2, 1], None)

    # Members see the org too, but may not list it.
    assert others[0].sdk.orgs.get_org().name == "Five"
    assert http.get("/org/members", headers=others[0].headers).status_code == 403


def test_members_are_removed(people: People, http: httpx.Client) -> None:
    admin, leaving, staying = people.users(3)
    orgs = admin.sdk.orgs
    org = orgs.create_org(body=OrgDetails(name="Shrinking"))
    for person in (leaving, staying):
        add(admin, http, person, UserOrgRole.MEMBER)

    assert orgs.delete_org_member(user_id=leaving.id) is None  # 204, no body
    assert [member.id for member in orgs.list_org_members()] == [admin.id, staying.id]
    gone = http.get("/org", headers=leaving.headers)
    assert gone.status_code == 404
    assert staying.sdk.orgs.get_org().id == org.id

    again = http.delete(f"/org/members/{leaving.id}", headers=admin.headers)
    assert again.status_code == 404
    last_admin = http.delete(f"/org/members/{admin.id}", headers=admin.headers)
    assert last_admin.status_code == 409
    assert last_admin.json()["error_code"] == "conflict"

    # Whoever left is free to start an org of their own.
    assert leaving.sdk.orgs.create_org(body=OrgDetails(name="Spin-off")).id != org.id


def test_an_invitation_to_an_unknown_email_looks_like_any_other(
    people: People, http: httpx.Client
) -> None:
    admin, known = people.users(2)
    admin.sdk.orgs.create_org(body=OrgDetails(name="Quiet"))
    unknown = f"e2e-{uuid.uuid4().hex[:12]}@example.com"  # as long as the known one
    answers = [
        admin.sdk.orgs.create_org_member(body=AddOrgMember(email=email, role=UserOrgRole.MEMBER))
        for email in (known.email, unknown)
    ]
    # A live clock: the times differ by when each was asked, nothing else may.
    varying = {"id", "email", "created_at", "updated_at"}
    shapes = [answer.model_dump(exclude=varying) for answer in answers]
    assert shapes[0] == shapes[1]
    assert all(answer.created_at == answer.updated_at for answer in answers)
    assert [answer.email for answer in answers] == [known.email, unknown]


def test_members_get_and_change_roles_and_leave(people: People, http: httpx.Client) -> None:
    admin, member = people.users(2)
    orgs = admin.sdk.orgs
    orgs.create_org(body=OrgDetails(name="Roles"))
    add(admin, http, member, UserOrgRole.MEMBER)

    got = orgs.get_org_member(user_id=member.id)
    assert (str(got.id), got.email, got.role) == (member.id, member.email, "member")
    promoted = orgs.update_org_member(
        user_id=member.id, body=UpdateMemberToOrgBody(role=UserOrgRole.ADMIN)
    )
    assert (str(promoted.id), promoted.role) == (member.id, "admin")
    # At once: the new admin lists the members and demotes the first.
    assert {str(m.id) for m in member.sdk.orgs.list_org_members()} == {admin.id, member.id}
    demoted = member.sdk.orgs.update_org_member(
        user_id=admin.id, body=UpdateMemberToOrgBody(role=UserOrgRole.MEMBER)
    )
    assert demoted.role == "member"
    assert http.get("/org/members", headers=admin.headers).status_code == 403
    last = http.put(f"/org/members/{member.id}", headers=member.headers, json={"role": "member"})
    assert (last.status_code, last.json()["error_code"]) == (409, "conflict")

    # The last admin may not leave while the other is still in; the other may.
    stuck = http.delete("/org/membership", headers=member.headers)
    assert stuck.status_code == 409
    assert http.delete("/org/membership", headers=admin.headers).status_code == 204
    assert http.get("/org", headers=admin.headers).status_code == 404


def test_an_org_is_renamed_then_deleted(people: People, http: httpx.Client) -> None:
    admin, member = people.users(2)
    orgs = admin.sdk.orgs
    created = orgs.create_org(body=OrgDetails(name="Before", phone="+1 555 0100"))
    renamed = orgs.update_org(body=OrgDetails(name="After"))
    assert (renamed.id, renamed.name, renamed.phone) == (created.id, "After", "+1 555 0100")
    assert orgs.get_org().name == "After"

    add(admin, http, member, UserOrgRole.MEMBER)
    refused = http.delete("/org", headers=admin.headers)
    assert (refused.status_code, refused.json()["error_code"]) == (409, "conflict")
    orgs.delete_org_member(user_id=member.id)
    assert orgs.delete_org() is None  # 204
    assert http.get("/org", headers=admin.headers).status_code == 404
    assert orgs.create_org(body=OrgDetails(name="Anew")).id != created.id
