"""The seed documents' own curl requests, replayed against the live server with real ids and
tokens: they succeed, and answer with exactly the fields of their kittycad 1.2.0 schema.

Seeds 000 and 001 (the org-balance documents) are the generation the contract follows, so their
response examples must have our key sets too. Seeds 002 and 003 show an older generation
(`monthly_credits_remaining`, `pay_as_you_go_credits`, ...); the reference README says the newer
one wins, so their responses are held to the schema alone.
"""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kittycad.models.enterprise_subscription_tier_price import (
    EnterpriseSubscriptionTierPrice,
    OptionPerUser,
)
from kittycad.models.plan_interval import PlanInterval

from tests.e2e.conftest import Account, People, Zoopay
from tests.support.http import add_card
from tests.support.reference import reference_fields

# The curl requests and response examples of the seed documents, kept as the project's fixtures.
SEEDS = Path(__file__).resolve().parent / "seeds"
SEED_HOST = "https://api.zoo.dev"


@dataclass(frozen=True)
class Seed:
    method: str
    path: str
    headers: dict[str, str]
    data: str | None
    example: dict[str, Any]


def load_seed(name: str) -> Seed:
    """The curl request of a seed document and its response example."""
    text = (SEEDS / f"{name}.txt").read_text()
    curl, after = text[text.index("$ curl") + 2 :].split("\n200 OK", 1)
    args = shlex.split(curl.replace("\\\n", " "))
    method, url, headers, data = "GET", "", {}, None
    rest = iter(args[1:])
    for arg in rest:
        if arg == "-X":
            method = next(rest)
        elif arg == "--header":
            key, value = next(rest).split(":", 1)
            headers[key.strip()] = value.strip()
        elif arg == "--data":
            data = next(rest)
        else:
            url = arg
    assert url.startswith(SEED_HOST), url
    example_text = after[after.index("Response") + len("Response") :].lstrip()
    example, _ = json.JSONDecoder().raw_decode(example_text)
    return Seed(method, url.removeprefix(SEED_HOST), headers, data, example)


def replay(http: httpx.Client, seed: Seed, token: str, **path_ids: str) -> httpx.Response:
    """The seed's request as its curl line sends it, with a real token and real ids."""
    headers = {k: v.replace("$TOKEN", token) for k, v in seed.headers.items()}
    path = seed.path.format(**path_ids)
    content = seed.data.encode() if seed.data is not None else None
    return http.request(seed.method, path, headers=headers, content=content)


def assert_balance_shape(body: dict[str, Any]) -> None:
    assert set(body) == reference_fields("CustomerBalance")
    assert set(body["subscription_details"]) == reference_fields("ZooProductSubscriptions")
    tier = body["subscription_details"]["modeling_app"]
    assert set(tier) == reference_fields("ModelingAppSubscriptionTier")


def org_on_team(zoopay: Zoopay, admin: Account, http: httpx.Client) -> str:
    """An org of `admin`'s, put on team by seed 003's own request."""
    org_id: str = zoopay.json("orgs", "create", "Seeded", "--admin", admin.email)["id"]
    add_card(http, admin.headers, "/org")  # the plan is paid for
    response = replay(http, load_seed("003"), admin.token)
    assert response.status_code == 200, response.text
    return org_id


def test_seed_003_put_org_subscription(people: People, zoopay: Zoopay, http: httpx.Client) -> None:
    seed = load_seed("003")
    assert (seed.method, seed.path, json.loads(seed.data or "")) == (
        "PUT",
        "/org/payment/subscriptions",
        {"modeling_app": "team"},
    )
    admin = people.user()
    zoopay.json("orgs", "create", "Seeded", "--admin", admin.email)
    add_card(http, admin.headers, "/org")  # the plan is paid for

    response = replay(http, seed, admin.token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == set(seed.example) == reference_fields("ZooProductSubscriptions")
    assert set(body["modeling_app"]) == reference_fields("ModelingAppSubscriptionTier")
    assert body["modeling_app"]["name"] == "team"
    assert body["modeling_app"]["price"] == {
        "type": "per_user",
        "interval": "month",
        "price": "99.00",
    }


def test_seed_000_put_org_balance(people: People, zoopay: Zoopay, http: httpx.Client) -> None:
    seed = load_seed("000")
    assert (seed.method, seed.path) == ("PUT", "/orgs/{id}/payment/balance")
    assert json.loads(seed.data or "") == {
        "monthly_api_credits_remaining_monetary_value": "84.34",
        "stable_api_credits_remaining_monetary_value": "19.00",
    }
    staff, admin = people.user(staff=True), people.user()
    org_id = org_on_team(zoopay, admin, http)

    response = replay(http, seed, staff.token, id=org_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_balance_shape(body)
    assert set(body) == set(seed.example)
    example_tier = seed.example["subscription_details"]["modeling_app"]
    assert set(body["subscription_details"]["modeling_app"]) == set(example_tier)
    assert body["map_id"] == org_id
    assert body["monthly_api_credits_remaining_monetary_value"] == "84.34"
    assert body["monthly_api_credits_remaining"] == 168
    assert body["stable_api_credits_remaining_monetary_value"] == "19.00"
    assert body["stable_api_credits_remaining"] == 38


def test_seed_001_get_org_balance(people: People, zoopay: Zoopay, http: httpx.Client) -> None:
    seed = load_seed("001")
    assert (seed.method, seed.path, seed.data) == ("GET", "/orgs/{id}/payment/balance", None)
    staff, admin = people.user(staff=True), people.user()
    org_id = org_on_team(zoopay, admin, http)
    assert replay(http, load_seed("000"), staff.token, id=org_id).status_code == 200
    staff.sdk.orgs.update_enterprise_pricing_for_org(
        id=org_id,
        body=EnterpriseSubscriptionTierPrice(
            OptionPerUser(interval=PlanInterval.MONTH, price=13.18)
        ),
    )

    response = replay(http, seed, staff.token, id=org_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_balance_shape(body)
    assert set(body) == set(seed.example)
    example_tier = seed.example["subscription_details"]["modeling_app"]
    assert set(body["subscription_details"]["modeling_app"]) == set(example_tier)
    assert body["modeling_app_enterprise_price"] == {
        "type": "per_user",
        "interval": "month",
        "price": "13.18",
    }
    assert set(body["modeling_app_enterprise_price"]) == set(
        load_seed("000").example["modeling_app_enterprise_price"]
    )
    assert body["monthly_api_credits_remaining_monetary_value"] == "84.34"
    assert body["stable_api_credits_remaining_monetary_value"] == "19.00"
    assert body["subscription_details"]["modeling_app"]["name"] == "team"
    assert body["subscription_id"]


def test_seed_002_get_user_balance(people: People, http: httpx.Client) -> None:
    seed = load_seed("002")
    assert (seed.method, seed.path, seed.data) == ("GET", "/user/payment/balance", None)
    user = people.user()

    response = replay(http, seed, user.token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_balance_shape(body)
    assert body["map_id"] == user.id
    assert body["modeling_app_enterprise_price"] is None
    assert body["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert body["monthly_api_credits_remaining"] == 20
    assert body["total_due"] == "0.00"
    assert body["subscription_details"]["modeling_app"]["name"] == "free"
