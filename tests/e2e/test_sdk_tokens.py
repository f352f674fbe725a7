"""API tokens and org service accounts on the live server, through kittycad 1.2.0 and the newest
kittycad (1.8.0 when written, run in a subprocess as in test_latest_sdk), and the operator's
`zoopay tokens revoke`, `users delete` and `users set-staff`.

Both SDKs have the same fields in ApiToken and ServiceAccount; 1.8.0 reads a token's creation as
ApiTokenWithFullToken, whose fields are the same again. So one answer serves both: the full token
in the creation's `token`, `zoo_...` and its last 4 characters everywhere else.
"""

import json
import time
from typing import Any

import httpx
from kittycad.models import OrgDetails

from tests.e2e.conftest import LiveServer, People, Zoopay
from tests.e2e.metering_support import bearer
from tests.e2e.sdk_support import run_latest
from tests.support.http import shown

DEADLINE_SECONDS = 20  # far past the token cache's half second


def eventually(send: Any, status: int) -> httpx.Response:
    """Send until the answer has `status`; a change reaches every process within the token
    cache's TTL, so only a real failure waits out the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        response: httpx.Response = send()
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.05)


def test_tokens_through_kittycad_1_2_0(people: People, http: httpx.Client) -> None:
    alice, bob = people.users(2)
    tokens = alice.sdk.api_tokens

    created = tokens.create_api_token_for_user(label="laptop")
    secret = created.token
    assert secret.startswith("zoo_") and len(secret) == 47
    assert (created.label, created.user_id, created.is_valid) == ("laptop", alice.id, True)
    assert http.get("/user/payment/balance", headers=bearer(secret)).json()["map_id"] == alice.id

    listed = list(tokens.list_api_tokens_for_user(limit=1))  # page by page, one a page
    assert [(t.label, t.token, t.is_valid) for t in listed] == [
        (None, shown(alice.token), True),
        ("laptop", shown(secret), True),
    ]
    newest = next(iter(tokens.list_api_tokens_for_user(sort_by="created_at_descending")))
    assert newest.id == created.id

    got = tokens.get_api_token_for_user(token=created.id)
    assert (got.id, got.token, got.created_at) == (created.id, shown(secret), created.created_at)

    # Bob cannot see or revoke it: 404, as for no token at all.
    for method in ("GET", "DELETE"):
        refused = http.request(method, f"/user/api-tokens/{created.id}", headers=bob.headers)
        assert (refused.status_code, refused.json()["error_code"]) == (404, "not_found")

    assert tokens.delete_api_token_for_user(token=created.id) is None
    eventually(lambda: http.get("/user/payment/balance", headers=bearer(secret)), 401)
    assert tokens.get_api_token_for_user(token=created.id).is_valid is False
    assert http.get("/user/payment/balance", headers=alice.headers).status_code == 200


def test_service_accounts_through_kittycad_1_2_0(
    people: People, http: httpx.Client, zoopay: Zoopay
) -> None:
    admin, member = people.users(2)
    org = admin.sdk.orgs.create_org(body=OrgDetails(name="Robots"))
    zoopay.json("orgs", "add-member", org.id, member.email)
    accounts = admin.sdk.service_accounts

    created = accounts.create_service_account_for_org(label="ci")
    assert (created.org_id, created.label, created.is_valid) == (org.id, "ci", True)
    as_account = bearer(created.token)
    assert http.get("/org/payment/balance", headers=as_account).json()["map_id"] == org.id
    assert http.get("/user/payment/balance", headers=as_account).status_code == 403

    listed = list(accounts.list_service_accounts_for_org())
    assert [(a.id, a.token) for a in listed] == [(created.id, shown(created.token))]
    assert accounts.get_service_account_for_org(token=created.id).label == "ci"
    refused = http.get("/org/service-accounts", headers=member.headers)
    assert refused.status_code == 403

    accounts.delete_service_account_for_org(token=created.id)
    eventually(lambda: http.get("/org/payment/balance", headers=as_account), 401)
    assert accounts.get_service_account_for_org(token=created.id).is_valid is False


PROBE = r"""
import importlib.metadata, json, sys
from kittycad import KittyCAD

base_url, given = sys.argv[1], json.loads(sys.argv[2])
admin = KittyCAD(token=given["admin"], base_url=base_url)

def fields(model):
    return {**model.model_dump(mode="json"), "class": type(model).__name__}

made = admin.api_tokens.create_api_token_for_user(label="newest sdk")
account = admin.service_accounts.create_service_account_for_org(label="newest ci")
out = {
    "version": importlib.metadata.version("kittycad"),
    "created": fields(made),
    "listed": [fields(t) for t in admin.api_tokens.list_api_tokens_for_user()],
    "got": fields(admin.api_tokens.get_api_token_for_user(token=made.id)),
    "deleted": admin.api_tokens.delete_api_token_for_user(token=made.id),
    "after_delete": fields(admin.api_tokens.get_api_token_for_user(token=made.id)),
    "account": fields(account),
    "accounts": [fields(a) for a in admin.service_accounts.list_service_accounts_for_org()],
    "account_got": fields(admin.service_accounts.get_service_account_for_org(token=account.id)),
    "account_deleted": admin.service_accounts.delete_service_account_for_org(token=account.id),
    "account_after_delete": fields(
        admin.service_accounts.get_service_account_for_org(token=account.id)
    ),
}
print(json.dumps(out))
"""


def test_tokens_through_the_newest_kittycad(
    people: People, server: LiveServer, http: httpx.Client
) -> None:
    admin = people.user()
    org = admin.sdk.orgs.create_org(body=OrgDetails(name="Newest"))
    probe: dict[str, Any] = run_latest(server, PROBE, json.dumps({"admin": admin.token}))
    assert tuple(int(part) for part in probe["version"].split(".")[:2]) >= (1, 8)

    created = probe["created"]
    secret = created.pop("token")
    assert created.pop("class") == "ApiTokenWithFullToken"
    assert secret.startswith("zoo_") and len(secret) == 47
    assert (created["label"], created["user_id"], created["is_valid"]) == (
        "newest sdk",
        admin.id,
        True,
    )
    token = {**created, "token": shown(secret), "class": "ApiToken"}
    assert probe["got"] == token
    assert [t["label"] for t in probe["listed"]] == [None, "newest sdk"]
    assert probe["listed"][1] == token
    assert probe["deleted"] is None
    assert probe["after_delete"]["is_valid"] is False
    eventually(lambda: http.get("/user/payment/balance", headers=bearer(secret)), 401)

    account = probe["account"]
    account_secret = account.pop("token")
    assert (account.pop("class"), account["org_id"], account["label"]) == (
        "ServiceAccount",
        org.id,
        "newest ci",
    )
    shown_account = {**account, "token": shown(account_secret), "class": "ServiceAccount"}
    assert probe["accounts"] == [shown_account]
    assert probe["account_got"] == shown_account
    assert probe["account_deleted"] is None
    assert probe["account_after_delete"]["is_valid"] is False
    eventually(lambda: http.get("/org/payment/balance", headers=bearer(account_secret)), 401)


# --- the operator -------------------------------------------------------------------------------


def test_the_operator_revokes_tokens_deletes_users_and_changes_staff(
    people: People, http: httpx.Client, zoopay: Zoopay
) -> None:
    staff, alice = people.user(staff=True), people.user()
    service = zoopay.json("tokens", "create", "--service", "product")
    authorize = {"user_id": alice.id, "endpoint": "/file/conversion"}

    def ask() -> httpx.Response:
        return http.post("/api-calls/authorize", json=authorize, headers=bearer(service["token"]))

    assert ask().json()["allowed"] is True
    revoked = zoopay.json("tokens", "revoke", service["id"])
    assert revoked["id"] == service["id"] and revoked["revoked_at"]
    eventually(ask, 401)
    assert zoopay.json("tokens", "revoke", service["id"]) == revoked  # again: no change
    unknown = zoopay.run("tokens", "revoke", "not-a-uuid")
    assert unknown.returncode == 1 and json.loads(unknown.stderr)["error_code"] == "bad_request"

    # A staff user made plain loses the staff endpoints; made staff again, gets them back.
    path = f"/users/{alice.id}/payment/balance"
    assert http.get(path, headers=staff.headers).status_code == 200
    plain = zoopay.json("users", "set-staff", staff.email, "--no-staff")
    assert plain == {"id": staff.id, "email": staff.email, "is_staff": False}
    eventually(lambda: http.get(path, headers=staff.headers), 403)
    zoopay.json("users", "set-staff", staff.email, "--staff")
    eventually(lambda: http.get(path, headers=staff.headers), 200)

    # A deleted user's tokens stop; their balance stays for the audit trail.
    deleted = zoopay.json("users", "delete", alice.email)
    assert (deleted["id"], deleted["email"]) == (alice.id, alice.email) and deleted["deleted_at"]
    eventually(lambda: http.get("/user/payment/balance", headers=alice.headers), 401)
    kept = http.get(path, headers=staff.headers)
    assert kept.json()["map_id"] == alice.id
    refused = zoopay.run("tokens", "create", alice.email)
    assert refused.returncode == 1 and json.loads(refused.stderr)["error_code"] == "conflict"
