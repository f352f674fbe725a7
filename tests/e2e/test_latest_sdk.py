"""Balances and subscriptions read with the newest kittycad as well (1.8.0 when written).

It cannot share the venv with the pinned 1.2.0, so `make test` installs it into
`.venv/kittycad-latest` (with truststore, which it imports and 1.2.0 does not) and this test runs
it in a subprocess with that directory first on PYTHONPATH; the subprocess prints, for each
read, either what it read or the validation errors that stopped it, as JSON.

What 1.8.0's schema can and cannot read, precisely (the test asserts each point):
- Its CustomerBalance no longer has `id`, `map_id` and `modeling_app_enterprise_price`; its
  generated methods validate with `extra="ignore"`, so it reads our balances without those three.
- Its ZooTool enum dropped `diff_chrome_extension`; the shipped catalog lists no such tool, so
  that newer clients can read every listed plan (a catalog that lists it is unreadable to them).
- Its SubscriptionTierPrice knows `flat`, `per_user` and `contract`, not 1.2.0's `enterprise`, so
  the catalog's enterprise tier (listed as `{"type": "enterprise"}`) also fails on `price`.
- It has no `get_payment_balance_for_any_org` (no staff endpoints at all). The probe reads
  `/orgs/{id}/payment/balance` with that SDK's own HTTP client and CustomerBalance model, as its
  generated methods read the balances they do have.
"""

import json
from pathlib import Path

import httpx
from kittycad.models import (
    UpdatePaymentBalance,
    ZooProductSubscriptionsOrgRequest,
    ZooProductSubscriptionsUserRequest,
)
from packaging.version import Version

from tests.e2e.conftest import LiveServer, People, Zoopay
from tests.e2e.sdk_support import LATEST_SDK, run_latest
from tests.support.http import add_card

PROBE = r"""
import importlib.metadata, json, sys
import kittycad
from kittycad import KittyCAD
from kittycad.models.customer_balance import CustomerBalance
from kittycad.models.modeling_app_subscription_tier import ModelingAppSubscriptionTier
from pydantic import ValidationError

base_url, given = sys.argv[1], json.loads(sys.argv[2])
sdk = {name: KittyCAD(token=given[name], base_url=base_url)
       for name in ("free_user", "pro_user", "planless_admin", "team_admin", "staff")}

def subscription(subscriptions):
    tier = subscriptions.modeling_app
    return {
        "name": tier.name,
        "price": tier.price.root.model_dump(mode="json"),
        "monthly_credits": tier.monthly_pay_as_you_go_api_credits,
        "credit_price": tier.pay_as_you_go_api_credit_price,
        "support_tier": tier.support_tier,
    }

def balance(read):
    details = read.subscription_details
    return {
        "monthly": read.monthly_api_credits_remaining_monetary_value,
        "monthly_credits": read.monthly_api_credits_remaining,
        "stable": read.stable_api_credits_remaining_monetary_value,
        "stable_credits": read.stable_api_credits_remaining,
        "total_due": read.total_due,
        "subscription": subscription(details) if details else None,
    }

def any_org_balance(org_id):
    staff = sdk["staff"]
    url = f"{base_url}/orgs/{org_id}/payment/balance"
    response = staff.get_http_client().get(url, headers=staff.get_headers())
    response.raise_for_status()
    return CustomerBalance.model_validate(response.json(), extra="ignore")

def attempt(read, convert):
    try:
        return {"read": convert(read())}
    except ValidationError as exc:
        return {"errors": [
            [err["type"], ".".join(str(part) for part in err["loc"]), err["input"]]
            for err in exc.errors()
        ]}

def tier_name(tier):
    return attempt(
        lambda: ModelingAppSubscriptionTier.model_validate(tier, extra="ignore"),
        lambda read: read.name,
    )

reads = {
    "free_user_balance": (sdk["free_user"].payments.get_payment_balance_for_user, balance),
    "free_user_subscription": (sdk["free_user"].payments.get_user_subscription, subscription),
    "pro_user_balance": (sdk["pro_user"].payments.get_payment_balance_for_user, balance),
    "pro_user_subscription": (sdk["pro_user"].payments.get_user_subscription, subscription),
    "planless_org_balance": (sdk["planless_admin"].payments.get_payment_balance_for_org, balance),
    "planless_org_balance_by_staff": (lambda: any_org_balance(given["planless_org"]), balance),
    "team_org_balance": (sdk["team_admin"].payments.get_payment_balance_for_org, balance),
    "team_org_subscription": (sdk["team_admin"].payments.get_org_subscription, subscription),
    "team_org_balance_by_staff": (lambda: any_org_balance(given["team_org"]), balance),
    "catalog": (
        lambda: sdk["free_user"].meta.get_pricing_subscriptions()["modeling_app"],
        lambda listed: [tier_name(tier) for tier in listed],
    ),
}
print(json.dumps({
    "version": importlib.metadata.version("kittycad"),
    "module": kittycad.__file__,
    "balance_fields": sorted(CustomerBalance.model_fields),
    "has_any_org_method": hasattr(sdk["staff"].payments, "get_payment_balance_for_any_org"),
    **{name: attempt(read, convert) for name, (read, convert) in reads.items()},
}, default=str))
"""


def test_newest_kittycad_reads_balances_and_subscriptions(
    people: People, zoopay: Zoopay, server: LiveServer
) -> None:
    staff = people.user(staff=True)
    free_user, pro_user, planless_admin, team_admin = people.users(4)
    staff.sdk.payments.update_payment_balance_for_any_user(
        id=free_user.id, body=UpdatePaymentBalance(stable_api_credits_remaining_monetary_value=2.75)
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as http:  # the plan is paid for
        add_card(http, pro_user.headers)
    pro_user.sdk.payments.update_user_subscription(
        body=ZooProductSubscriptionsUserRequest(modeling_app="pro")
    )
    planless_org = zoopay.json("orgs", "create", "Planless", "--admin", planless_admin.email)
    team_org = zoopay.json("orgs", "create", "Team", "--admin", team_admin.email)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:  # the plan is paid for
        add_card(http, team_admin.headers, "/org")
    team_admin.sdk.payments.update_org_subscription(
        body=ZooProductSubscriptionsOrgRequest(modeling_app="team")
    )
    for org in (planless_org, team_org):
        staff.sdk.payments.update_payment_balance_for_any_org(
            id=org["id"],
            body=UpdatePaymentBalance(
                monthly_api_credits_remaining_monetary_value=84.34,
                stable_api_credits_remaining_monetary_value=19.00,
            ),
        )

    probe = run_latest(
        server,
        PROBE,
        json.dumps(
            {
                "free_user": free_user.token,
                "pro_user": pro_user.token,
                "planless_admin": planless_admin.token,
                "team_admin": team_admin.token,
                "staff": staff.token,
                "planless_org": planless_org["id"],
                "team_org": team_org["id"],
            }
        ),
    )

    assert Path(probe["module"]).is_relative_to(LATEST_SDK)
    assert Version(probe["version"]) >= Version("1.8.0")
    assert not {"id", "map_id", "modeling_app_enterprise_price"} & set(probe["balance_fields"])
    assert probe["has_any_org_method"] is False

    # Read where its schema allows, with exact values.
    free = {
        "name": "free",
        "price": {"interval": "month", "price": 0.0, "type": "flat"},
        "monthly_credits": 20,
        "credit_price": 0.5,
        "support_tier": "community",
    }
    assert probe["free_user_subscription"] == {"read": free}
    assert probe["free_user_balance"] == {
        "read": {
            "monthly": 10.0,
            "monthly_credits": 20,
            "stable": 2.75,
            "stable_credits": 5,
            "total_due": 0.0,
            "subscription": free,
        }
    }
    planless = {
        "monthly": 84.34,
        "monthly_credits": 0,  # no plan, so no credit price
        "stable": 19.0,
        "stable_credits": 0,
        "total_due": 0.0,
        "subscription": None,
    }
    assert probe["planless_org_balance"] == {"read": planless}
    assert probe["planless_org_balance_by_staff"] == {"read": planless}

    pro = {
        "name": "pro",
        "price": {"interval": "month", "price": 49.0, "type": "flat"},
        "monthly_credits": 200,
        "credit_price": 0.5,
        "support_tier": "standard_email",
    }
    assert probe["pro_user_subscription"] == {"read": pro}
    assert probe["pro_user_balance"] == {
        "read": {
            "monthly": 100.0,
            "monthly_credits": 200,
            "stable": 0.0,
            "stable_credits": 0,
            "total_due": 0.0,
            "subscription": pro,
        }
    }
    team = {
        "name": "team",
        "price": {"interval": "month", "price": 99.0, "type": "per_user"},
        "monthly_credits": 500,
        "credit_price": 0.5,
        "support_tier": "priority_email",
    }
    assert probe["team_org_subscription"] == {"read": team}
    team_balance = {
        "monthly": 84.34,
        "monthly_credits": 168,
        "stable": 19.0,
        "stable_credits": 38,
        "total_due": 0.0,
        "subscription": team,
    }
    for read in ("team_org_balance", "team_org_balance_by_staff"):
        assert probe[read] == {"read": team_balance}, read

    # The catalog (a plain dict in the SDK) tier by tier through 1.8.0's tier model: all but the
    # enterprise tier's price type, which 1.8.0 calls "contract".
    assert probe["catalog"] == {
        "read": [
            {"read": "free"},
            {"read": "pro"},
            {"read": "team"},
            {"errors": [["union_tag_invalid", "price", {"type": "enterprise"}]]},
        ]
    }
