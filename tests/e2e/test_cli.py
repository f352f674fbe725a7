"""The `zoopay` command prints the documented JSON, and what it makes works on the live server."""

import json
import uuid

import httpx
from kittycad.models import OrgDetails

from tests.e2e.conftest import People, Zoopay


def _email() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}@example.com"


def test_users_create_prints_id_email_and_a_working_token(
    zoopay: Zoopay, people: People, http: httpx.Client
) -> None:
    email = _email()
    created = zoopay.json("users", "create", email.upper(), "--name", "Ada Lovelace")
    assert set(created) == {"id", "email", "token"}
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["email"] == email  # stored normalized

    balance = http.get(
        "/user/payment/balance", headers={"Authorization": f"Bearer {created['token']}"}
    )
    assert balance.status_code == 200, balance.text
    assert balance.json()["map_id"] == created["id"]
    assert balance.json()["subscription_details"]["modeling_app"]["name"] == "free"
    assert balance.json()["monthly_api_credits_remaining_monetary_value"] == "10.00"

    sdk = people.sdk(created["token"])
    sdk.orgs.create_org(body=OrgDetails(name="Lovelace Analytical"))
    [me] = list(sdk.orgs.list_org_members())
    assert (me.id, me.email, me.name, me.role) == (created["id"], email, "Ada Lovelace", "admin")


def test_staff_flag_opens_the_staff_endpoints(zoopay: Zoopay, http: httpx.Client) -> None:
    staff = zoopay.json("users", "create", _email(), "--staff")
    plain = zoopay.json("users", "create", _email())
    path = f"/users/{plain['id']}/payment/balance"

    as_staff = http.get(path, headers={"Authorization": f"Bearer {staff['token']}"})
    assert as_staff.status_code == 200, as_staff.text
    assert as_staff.json()["map_id"] == plain["id"]

    as_plain = http.get(
        f"/users/{staff['id']}/payment/balance",
        headers={"Authorization": f"Bearer {plain['token']}"},
    )
    assert as_plain.status_code == 403
    assert as_plain.json()["error_code"] == "forbidden"


def test_tokens_create_prints_a_second_token_for_the_same_user(
    zoopay: Zoopay, http: httpx.Client
) -> None:
    email = _email()
    first = zoopay.json("users", "create", email)
    second = zoopay.json("tokens", "create", email)
    assert set(second) == {"id", "token"}
    assert second["token"] != first["token"]
    for token in (first["token"], second["token"]):
        got = http.get("/user/payment/balance", headers={"Authorization": f"Bearer {token}"})
        assert got.status_code == 200, got.text
        assert got.json()["map_id"] == first["id"]


def test_orgs_create_and_add_member(zoopay: Zoopay, people: People) -> None:
    admin, member, second_admin = people.users(3)

    org = zoopay.json("orgs", "create", "Acme Robotics", "--admin", admin.email)
    assert set(org) == {"id", "name"}
    assert org["name"] == "Acme Robotics"
    assert str(uuid.UUID(org["id"])) == org["id"]

    added = zoopay.json("orgs", "add-member", org["id"], member.email, "--role", "member")
    assert added == {"org_id": org["id"], "user_id": member.id, "role": "member"}
    promoted = zoopay.json("orgs", "add-member", org["id"], second_admin.email, "--role", "admin")
    assert promoted["role"] == "admin"

    for account in (admin, member, second_admin):
        seen = account.sdk.orgs.get_org()
        assert (seen.id, seen.name, seen.billing_email) == (org["id"], "Acme Robotics", admin.email)
    members = list(second_admin.sdk.orgs.list_org_members())
    assert [(m.id, m.role) for m in members] == [
        (admin.id, "admin"),
        (member.id, "member"),
        (second_admin.id, "admin"),
    ]


def test_failures_exit_1_with_a_json_error_on_stderr(zoopay: Zoopay) -> None:
    email = _email()
    zoopay.json("users", "create", email)

    duplicate = zoopay.run("users", "create", email)
    assert duplicate.returncode == 1
    assert duplicate.stdout == ""
    assert json.loads(duplicate.stderr)["error_code"] == "conflict"

    unknown = zoopay.run("tokens", "create", _email())
    assert unknown.returncode == 1
    assert json.loads(unknown.stderr)["error_code"] == "not_found"
