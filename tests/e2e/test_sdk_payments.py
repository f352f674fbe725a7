"""Balances and subscriptions on the live server through kittycad 1.2.0, values asserted.

kittycad 1.2.0 raises ImportError instead of its own error on an error status, so error
statuses are checked with plain httpx and every success path with the SDK.
"""

import httpx
from kittycad.models import (
    CustomerBalance,
    UpdatePaymentBalance,
    ZooProductSubscriptions,
    ZooProductSubscriptionsOrgRequest,
    ZooProductSubscriptionsUserRequest,
)
from kittycad.models.enterprise_subscription_tier_price import (
    EnterpriseSubscriptionTierPrice,
    OptionFlat,
    OptionPerUser,
)
from kittycad.models.plan_interval import PlanInterval

from tests.e2e.conftest import Account, People, Zoopay
from tests.support.billing import add_card_to


def _org(zoopay: Zoopay, admin: Account, name: str = "Acme") -> str:
    org_id: str = zoopay.json("orgs", "create", name, "--admin", admin.email)["id"]
    return org_id


def _buckets(balance: CustomerBalance) -> tuple[float, int, float, int]:
    return (
        balance.monthly_api_credits_remaining_monetary_value,
        balance.monthly_api_credits_remaining,
        balance.stable_api_credits_remaining_monetary_value,
        balance.stable_api_credits_remaining,
    )


def _plan(balance: CustomerBalance) -> str | None:
    details = balance.subscription_details
    return str(details.modeling_app.name) if details else None


def _price(subscriptions: ZooProductSubscriptions) -> dict[str, object]:
    return subscriptions.modeling_app.price.root.model_dump(mode="json")


def test_new_user_balance_and_free_plan(people: People) -> None:
    user = people.user()
    balance = user.sdk.payments.get_payment_balance_for_user()
    assert balance.map_id == user.id
    assert _buckets(balance) == (10.0, 20, 0.0, 0)
    assert balance.total_due == 0.0
    assert balance.modeling_app_enterprise_price is None
    assert _plan(balance) == "free"
    assert balance.subscription_id

    without_total = user.sdk.payments.get_payment_balance_for_user(include_total_due=False)
    assert without_total.total_due is None
    assert _buckets(without_total) == (10.0, 20, 0.0, 0)

    free = user.sdk.payments.get_user_subscription()
    tier = free.modeling_app
    assert (tier.name, tier.monthly_pay_as_you_go_api_credits) == ("free", 20)
    assert tier.monthly_pay_as_you_go_api_credits_monetary_value == 10.0
    assert tier.pay_as_you_go_api_credit_price == 0.5
    assert tier.support_tier == "community"
    assert tier.type.root.type == "individual"
    assert _price(free) == {"interval": "month", "price": 0.0, "type": "flat"}


def test_user_subscribes_upgrades_and_downgrades(people: People, http: httpx.Client) -> None:
    user = people.user()
    add_card_to(people.zoopay.database_url, "user", user.id)  # an upgrade is paid
    payments = user.sdk.payments

    pro = payments.create_user_subscription(
        body=ZooProductSubscriptionsUserRequest(modeling_app="pro", pay_annually=True)
    )
    assert pro.modeling_app.name == "pro"
    assert pro.modeling_app.support_tier == "standard_email"
    assert _price(pro) == {"interval": "month", "price": 49.0, "type": "flat"}
    assert payments.get_user_subscription().modeling_app.name == "pro"
    # An upgrade tops the monthly bucket up to the new grant (free's $10 was not spent, pro
    # adds the $90 it grants beyond it): 200 credits of $0.50.
    assert _buckets(payments.get_payment_balance_for_user()) == (100.0, 200, 0.0, 0)

    again = http.post(
        "/user/payment/subscriptions", headers=user.headers, json={"modeling_app": "pro"}
    )
    assert again.status_code == 409
    assert again.json()["error_code"] == "conflict"

    free = payments.update_user_subscription(
        body=ZooProductSubscriptionsUserRequest(modeling_app="free")
    )
    assert free.modeling_app.name == "free"
    # A downgrade caps it at the new grant.
    balance = payments.get_payment_balance_for_user()
    assert _plan(balance) == "free"
    assert _buckets(balance) == (10.0, 20, 0.0, 0)

    back = payments.update_user_subscription(
        body=ZooProductSubscriptionsUserRequest(modeling_app="pro")
    )
    assert back.modeling_app.name == "pro"
    # Switching back grants nothing more this period: pro's grant was already given.
    assert _buckets(payments.get_payment_balance_for_user()) == (10.0, 20, 0.0, 0)


def test_staff_reads_and_sets_any_users_balance(people: People, http: httpx.Client) -> None:
    staff = people.user(staff=True)
    user = people.user()
    payments = staff.sdk.payments

    by_id = payments.get_payment_balance_for_any_user(id=user.id)
    by_email = payments.get_payment_balance_for_any_user(id=user.email)
    assert by_id.map_id == by_email.map_id == user.id
    assert _buckets(by_id) == _buckets(by_email) == (10.0, 20, 0.0, 0)

    both = payments.update_payment_balance_for_any_user(
        id=user.id,
        body=UpdatePaymentBalance(
            monthly_api_credits_remaining_monetary_value=3.25,
            stable_api_credits_remaining_monetary_value=12.5,
        ),
    )
    assert both.map_id == user.id
    assert _buckets(both) == (3.25, 6, 12.5, 25)

    # The SDK sends the unset monthly value as null: it stays as it was.
    stable_only = payments.update_payment_balance_for_any_user(
        id=user.email,
        body=UpdatePaymentBalance(stable_api_credits_remaining_monetary_value=0.75),
    )
    assert _buckets(stable_only) == (3.25, 6, 0.75, 1)

    own = user.sdk.payments.get_payment_balance_for_user()
    assert _buckets(own) == (3.25, 6, 0.75, 1)
    raw = http.get("/user/payment/balance", headers=user.headers).json()
    assert raw["monthly_api_credits_remaining_monetary_value"] == "3.25"
    assert raw["stable_api_credits_remaining_monetary_value"] == "0.75"


def test_staff_changes_any_users_plan(people: People) -> None:
    staff = people.user(staff=True)
    user = people.user()

    pro = staff.sdk.users.update_subscription_for_user(
        id=user.email, body=ZooProductSubscriptionsUserRequest(modeling_app="pro")
    )
    assert pro.modeling_app.name == "pro"
    assert user.sdk.payments.get_user_subscription().modeling_app.name == "pro"
    assert _buckets(user.sdk.payments.get_payment_balance_for_user()) == (100.0, 200, 0.0, 0)

    free = staff.sdk.users.update_subscription_for_user(
        id=user.id, body=ZooProductSubscriptionsUserRequest(modeling_app="free")
    )
    assert free.modeling_app.name == "free"
    balance = staff.sdk.payments.get_payment_balance_for_any_user(id=user.id)
    assert _plan(balance) == "free"
    assert _buckets(balance) == (10.0, 20, 0.0, 0)


def test_staff_sets_an_org_balance_on_team(
    people: People, zoopay: Zoopay, http: httpx.Client
) -> None:
    staff, admin = people.user(staff=True), people.user()
    org_id = _org(zoopay, admin)
    add_card_to(zoopay.database_url, "org", org_id)  # an upgrade is paid

    team = admin.sdk.payments.update_org_subscription(
        body=ZooProductSubscriptionsOrgRequest(modeling_app="team")
    )
    assert team.modeling_app.name == "team"
    assert team.modeling_app.type.root.model_dump() == {"saml_sso": False, "type": "organization"}
    assert _price(team) == {"interval": "month", "price": 99.0, "type": "per_user"}
    assert _buckets(admin.sdk.payments.get_payment_balance_for_org()) == (250.0, 500, 0.0, 0)

    updated = staff.sdk.payments.update_payment_balance_for_any_org(
        id=org_id,
        body=UpdatePaymentBalance(
            monthly_api_credits_remaining_monetary_value=84.34,
            stable_api_credits_remaining_monetary_value=19.00,
        ),
    )
    # floor(84.34 / 0.50) = 168 and floor(19.00 / 0.50) = 38 credits.
    assert _buckets(updated) == (84.34, 168, 19.0, 38)
    assert updated.map_id == org_id

    got = staff.sdk.payments.get_payment_balance_for_any_org(id=org_id)
    assert _buckets(got) == (84.34, 168, 19.0, 38)
    assert (got.map_id, got.total_due, _plan(got)) == (org_id, 0.0, "team")
    assert got.modeling_app_enterprise_price is None

    seen_by_admin = admin.sdk.payments.get_payment_balance_for_org()
    assert _buckets(seen_by_admin) == (84.34, 168, 19.0, 38)
    assert seen_by_admin.map_id == org_id
    assert seen_by_admin.subscription_id == got.subscription_id

    raw = http.get(f"/orgs/{org_id}/payment/balance", headers=staff.headers).json()
    assert raw["monthly_api_credits_remaining_monetary_value"] == "84.34"
    assert raw["stable_api_credits_remaining_monetary_value"] == "19.00"


def test_org_plan_from_none_to_team_to_enterprise_and_back(
    people: People, zoopay: Zoopay, http: httpx.Client
) -> None:
    staff, admin = people.user(staff=True), people.user()
    org_id = _org(zoopay, admin)
    add_card_to(zoopay.database_url, "org", org_id)  # an upgrade is paid
    payments = admin.sdk.payments

    fresh = payments.get_payment_balance_for_org()
    assert (_plan(fresh), fresh.subscription_id) == (None, None)
    assert _buckets(fresh) == (0.0, 0, 0.0, 0)
    none_yet = http.get("/org/payment/subscriptions", headers=admin.headers)
    assert none_yet.status_code == 404

    team = payments.create_org_subscription(body=ZooProductSubscriptionsOrgRequest())
    assert team.modeling_app.name == "team"  # the request's default tier
    assert payments.get_org_subscription().modeling_app.name == "team"
    assert _buckets(payments.get_payment_balance_for_org()) == (250.0, 500, 0.0, 0)
    again = http.post(
        "/org/payment/subscriptions", headers=admin.headers, json={"modeling_app": "team"}
    )
    assert again.status_code == 409

    unpriced = http.put(
        "/org/payment/subscriptions", headers=admin.headers, json={"modeling_app": "enterprise"}
    )
    assert unpriced.status_code == 402
    assert unpriced.json()["error_code"] == "payment_required"
    assert payments.get_org_subscription().modeling_app.name == "team"

    priced = staff.sdk.orgs.update_enterprise_pricing_for_org(
        id=org_id,
        body=EnterpriseSubscriptionTierPrice(
            OptionPerUser(interval=PlanInterval.MONTH, price=13.18)
        ),
    )
    assert priced.modeling_app.name == "enterprise"
    assert priced.modeling_app.monthly_pay_as_you_go_api_credits == 2000
    assert _price(priced) == {"interval": "month", "price": 13.18, "type": "per_user"}
    still_team = staff.sdk.payments.get_payment_balance_for_any_org(id=org_id)
    assert _plan(still_team) == "team"
    assert still_team.modeling_app_enterprise_price is not None
    assert still_team.modeling_app_enterprise_price.root.model_dump(mode="json") == {
        "interval": "month",
        "price": 13.18,
        "type": "per_user",
    }

    enterprise = payments.update_org_subscription(
        body=ZooProductSubscriptionsOrgRequest(modeling_app="enterprise")
    )
    assert enterprise.modeling_app.name == "enterprise"
    assert enterprise.modeling_app.type.root.model_dump() == {
        "saml_sso": True,
        "type": "organization",
    }
    assert _price(enterprise) == {"interval": "month", "price": 13.18, "type": "per_user"}
    balance = payments.get_payment_balance_for_org()
    assert _plan(balance) == "enterprise"
    assert _buckets(balance) == (1000.0, 2000, 0.0, 0)

    staff.sdk.orgs.update_enterprise_pricing_for_org(
        id=org_id,
        body=EnterpriseSubscriptionTierPrice(OptionFlat(interval=PlanInterval.YEAR, price=5000)),
    )
    repriced = payments.get_org_subscription()
    assert _price(repriced) == {"interval": "year", "price": 5000.0, "type": "flat"}
    assert payments.get_payment_balance_for_org().modeling_app_enterprise_price is not None

    downgraded = payments.update_org_subscription(
        body=ZooProductSubscriptionsOrgRequest(modeling_app="team")
    )
    assert downgraded.modeling_app.name == "team"
    assert _buckets(payments.get_payment_balance_for_org()) == (250.0, 500, 0.0, 0)


def test_pricing_catalog_needs_no_token(people: People) -> None:
    anonymous = people.sdk("")  # an empty token: the SDK sends no Authorization header
    pricing = anonymous.meta.get_pricing_subscriptions()
    tiers = pricing["modeling_app"]
    assert [tier["name"] for tier in tiers] == ["free", "pro", "team", "enterprise"]
    assert [tier["price"] for tier in tiers] == [
        {"type": "flat", "interval": "month", "price": "0.00"},
        {"type": "flat", "interval": "month", "price": "49.00"},
        {"type": "per_user", "interval": "month", "price": "99.00"},
        {"type": "enterprise"},
    ]
    assert [tier["monthly_pay_as_you_go_api_credits"] for tier in tiers] == [20, 200, 500, 2000]
    assert [tier["monthly_pay_as_you_go_api_credits_monetary_value"] for tier in tiers] == [
        "10.00",
        "100.00",
        "250.00",
        "1000.00",
    ]
    assert {tier["pay_as_you_go_api_credit_price"] for tier in tiers} == {"0.50"}
    # Every tier is exactly 1.2.0's ModelingAppSubscriptionTier (unknown fields forbidden).
    for tier in tiers:
        ZooProductSubscriptions.model_validate({"modeling_app": tier})
