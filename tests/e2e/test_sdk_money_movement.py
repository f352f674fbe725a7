"""Billing information and cards on the live server, through kittycad 1.2.0 and 1.8.0.

1.2.0 drives what it knows (billing information, the setup intent, deleting a card, the tax
check); its method listing expects a plain list, which zoopay does not serve (today's API,
1.8.0, pages it), so the listing, the default card, the threshold and the portal link are
driven with 1.8.0, in a subprocess (see test_latest_sdk.py). Confirming the setup intent is
Stripe.js's part: plain HTTP to the embedded processor's endpoint, with no token.
"""

from urllib.parse import parse_qs, urlsplit

import httpx
from kittycad.models import AddressDetails, BillingInfo

from tests.e2e.conftest import LiveServer, People
from tests.e2e.sdk_support import confirm, run_latest


def test_billing_information_and_a_card_with_kittycad_1_2(
    people: People, http: httpx.Client
) -> None:
    user = people.user()
    payments = user.sdk.payments
    info = BillingInfo(
        address=AddressDetails(country="US", zip="94107", city="San Francisco"),
        name="Ada Lovelace",
        phone="+14155550100",
    )
    created = payments.create_payment_information_for_user(body=info)
    assert (created.name, created.phone, created.email) == (
        "Ada Lovelace",
        "+14155550100",
        user.email,
    )
    assert created.address is not None and (created.address.country, created.address.zip) == (
        "US",
        "94107",
    )
    assert (created.balance, created.currency, created.delinquent) == (0.0, "usd", False)
    assert created.id is not None and created.id.startswith("cus_")
    assert payments.get_payment_information_for_user() == created
    assert payments.validate_customer_tax_information_for_user() is None

    renamed = payments.update_payment_information_for_user(
        body=BillingInfo(address=info.address, name="Ada King", phone="")
    )
    assert (renamed.name, renamed.phone, renamed.id) == ("Ada King", "", created.id)

    intent = payments.create_payment_intent_for_user()
    card = confirm(http, intent.client_secret, "pm_card_visa")
    assert (card["card"]["brand"], card["card"]["last4"], card["type"]) == ("visa", "4242", "card")
    used = http.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": intent.client_secret, "payment_method": "pm_card_visa"},
    )
    assert used.status_code == 409 and used.json()["error_code"] == "conflict"

    listed = http.get("/user/payment/methods", headers=user.headers).json()
    assert [item["id"] for item in listed["items"]] == [card["id"]]
    assert payments.delete_payment_method_for_user(id=card["id"]) is None
    assert http.get("/user/payment/methods", headers=user.headers).json()["items"] == []

    assert payments.delete_payment_information_for_user() is None
    gone = http.get("/user/payment", headers=user.headers)
    assert gone.status_code == 404 and gone.json()["error_code"] == "not_found"


PROBE = r"""
import json, sys
from kittycad import KittyCAD
from kittycad.exceptions import KittyCADAPIError
from kittycad.models import AggregateUsageCollectionThresholdSet, BillingInfo

base_url, token = sys.argv[1], sys.argv[2]
payments = KittyCAD(token=token, base_url=base_url).payments
out = {}
out["customer"] = payments.create_payment_information_for_user(
    body=BillingInfo(name="Grace", phone=None)
).model_dump(mode="json")
pages = payments.list_payment_methods_for_user(limit=1)
out["methods"] = [m.model_dump(mode="json") for m in pages]
second = out["methods"][1]["id"]
out["default"] = payments.set_default_payment_method_for_user(id=second)
out["methods_after_default"] = [m.id for m in payments.list_payment_methods_for_user()]
out["threshold"] = payments.get_user_usage_collection_threshold().model_dump(mode="json")
out["threshold_set"] = payments.set_user_usage_collection_threshold(
    body=AggregateUsageCollectionThresholdSet(amount=42.5, expected_version=0)
).model_dump(mode="json")
try:
    payments.set_user_usage_collection_threshold(
        body=AggregateUsageCollectionThresholdSet(amount=50, expected_version=0)
    )
    out["stale"] = "accepted"
except KittyCADAPIError as error:
    out["stale"] = [error.status_code, error.error_code]
out["threshold_reset"] = payments.reset_user_usage_collection_threshold(
    expected_version=1
).model_dump(mode="json")
try:
    payments.redirect_payment_method_portal_link_for_user(return_url="https://app.example.com/")
    out["portal"] = "no redirect"
except KittyCADAPIError as error:
    out["portal"] = [error.status_code, error.headers.get("location", "")]
print(json.dumps(out))
"""


def test_cards_default_threshold_and_portal_with_kittycad_1_8(
    people: People, server: LiveServer, http: httpx.Client
) -> None:
    user = people.user()
    cards = []
    for token in ("pm_card_visa", "pm_card_mastercard"):
        intent = http.post("/user/payment/intent", headers=user.headers)
        assert intent.status_code == 201, intent.text
        cards.append(confirm(http, intent.json()["client_secret"], token))

    probe = run_latest(server, PROBE, user.token)

    assert (probe["customer"]["name"], probe["customer"]["phone"]) == ("Grace", "")
    assert probe["customer"]["email"] == user.email
    # Paged one at a time by the SDK's iterator: the default (the first card) first.
    assert [m["id"] for m in probe["methods"]] == [cards[0]["id"], cards[1]["id"]]
    assert [m["card"]["last4"] for m in probe["methods"]] == ["4242", "4444"]
    assert probe["default"] is None
    assert probe["methods_after_default"] == [cards[1]["id"], cards[0]["id"]]
    assert probe["threshold"] == {
        "admin_amount": None,
        "admin_bounds": {"maximum_amount": 1000000.0, "minimum_amount": 1.0},
        "customer_amount": None,
        "customer_bounds": {"maximum_amount": 10000.0, "minimum_amount": 10.0},
        "default_amount": 100.0,
        "effective_amount": 100.0,
        "source": "system_default",
        "version": 0,
    }
    assert probe["threshold_set"] == {
        **probe["threshold"],
        "customer_amount": 42.5,
        "effective_amount": 42.5,
        "source": "customer",
        "version": 1,
    }
    assert probe["stale"] == [409, "conflict"]
    assert probe["threshold_reset"] == {**probe["threshold"], "version": 2}
    # The SDK does not follow redirects: it reports the 303 with the page's Location.
    status, location = probe["portal"]
    # A single-use sign-in to the console's payment methods (the embedded processor's card page).
    assert status == 303 and location.startswith("/console/link?secret=zcl_")
    link = parse_qs(urlsplit(location).query)
    form = {"secret": link["secret"][0], "next": link["next"][0]}
    signed_in = http.post("/console/link", data=form)
    assert signed_in.status_code == 303, signed_in.text
    page = http.get(signed_in.headers["location"])
    http.cookies.clear()
    assert page.status_code == 200 and "4444" in page.text
    assert 'href="https://app.example.com/"' in page.text
