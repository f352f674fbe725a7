"""The customer's payment endpoints over HTTP, for a user and for an org's admin, on the
embedded processor: exact bodies, and what each refusal leaves unchanged."""

import base64
import html
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.payments.conftest import ADDRESS, BILLING, attach, make_due
from tests.support.console import FORM
from tests.support.database import dump
from tests.support.errors import assert_error
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import payment_customers, processor_customers
from zoopay.payments.thresholds import (
    ADMIN_AUTHORITY,
    effective_usage_threshold,
    set_threshold,
)
from zoopay.processors.embedded import TEST_CARDS


def visa(method_id: str, clock: Clock, token: str = "pm_card_visa") -> dict[str, Any]:
    card = TEST_CARDS[token]
    return {
        "billing_info": {"address": None, "name": None, "phone": ""},
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": None,
            },
            "country": "US",
            "exp_month": 12,
            "exp_year": 2029,
            "fingerprint": card.fingerprint,
            "funding": "credit",
            "last4": card.last4,
        },
        "created_at": clock.now.isoformat().replace("+00:00", "Z"),
        "id": method_id,
        "metadata": {},
        "type": "card",
    }


async def processor_id(engine: AsyncEngine, customer_id: str) -> str | None:
    async with reading(engine) as conn:
        found = await conn.execute(
            select(payment_customers.c.processor_customer_id).where(
                payment_customers.c.customer_id == customer_id
            )
        )
        return found.scalar_one_or_none()


# -- billing information


async def test_billing_information_lifecycle(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user("alice@example.com")
    assert_error(await client.get("/user/payment", headers=alice.headers), 404)
    before = await dump(engine)
    assert_error(await client.put("/user/payment", json=BILLING, headers=alice.headers), 404)
    assert await dump(engine) == before  # no processor customer made for a refused PUT

    created = await client.post("/user/payment", json=BILLING, headers=alice.headers)
    assert created.status_code == 201, created.text
    cus = await processor_id(engine, alice.id)
    assert cus is not None and cus.startswith("cus_")
    expected = {
        "address": ADDRESS,
        "balance": "0.00",
        "created_at": "2026-01-15T12:00:00Z",
        "currency": "usd",
        "delinquent": False,
        "email": "alice@example.com",
        "id": cus,
        "metadata": {},
        "name": "Alice Example",
        "phone": "+14155550100",
    }
    assert created.json() == expected
    assert (await client.get("/user/payment", headers=alice.headers)).json() == expected

    again = await client.post("/user/payment", json=BILLING, headers=alice.headers)
    assert_error(again, 409)

    clock.advance(hours=1)
    changed = {"name": "Alice B", "phone": "", "address": {"country": "DE", "zip": "10115"}}
    updated = await client.put("/user/payment", json=changed, headers=alice.headers)
    assert updated.status_code == 200, updated.text
    new_address = {
        "city": None,
        "country": "DE",
        "state": None,
        "street1": None,
        "street2": None,
        "zip": "10115",
    }
    assert updated.json() == {**expected, "address": new_address, "name": "Alice B", "phone": ""}
    async with reading(engine) as conn:
        mirrored = (await conn.execute(select(processor_customers))).mappings().one()
    assert (mirrored["id"], mirrored["email"], mirrored["name"]) == (
        cus,
        "alice@example.com",
        "Alice B",
    )

    vat = {"vat_id": "DE136695976"}
    taxed = await client.put("/user/payment/tax-id", json=vat, headers=alice.headers)
    assert taxed.status_code == 200, taxed.text
    deleted = await client.delete("/user/payment", headers=alice.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await client.get("/user/payment", headers=alice.headers), 404)
    # Deleted means forgotten: nothing of the billing information stays in zoopay's row.
    async with reading(engine) as conn:
        kept = (await conn.execute(select(payment_customers))).mappings().one()
    billing_columns = [c for c in kept if c.startswith("address_")] + ["name", "vat_id"]
    assert {c: kept[c] for c in billing_columns} == dict.fromkeys(billing_columns)
    assert (kept["phone"], kept["billing_info_at"]) == ("", None)
    assert_error(await client.delete("/user/payment", headers=alice.headers), 404)
    # Given again, it is the same processor customer.
    recreated = await client.post("/user/payment", json=BILLING, headers=alice.headers)
    assert recreated.status_code == 201 and recreated.json()["id"] == cus


async def test_a_1_8_null_phone_and_no_address_are_accepted(
    client: httpx.AsyncClient, world: World
) -> None:
    bob = await world.user("bob@example.com")
    body = {"address": None, "name": None, "phone": None}
    created = await client.post("/user/payment", json=body, headers=bob.headers)
    assert created.status_code == 201, created.text
    assert (created.json()["address"], created.json()["name"], created.json()["phone"]) == (
        None,
        None,
        "",
    )


async def test_delete_is_refused_while_money_is_due(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    await client.post("/user/payment", json=BILLING, headers=alice.headers)
    method = await attach(client, alice, "pm_card_visa")
    await make_due(engine, alice.user.customer, 1_250_000, clock)
    shown = await client.get("/user/payment", headers=alice.headers)
    assert shown.json()["balance"] == "1.25"
    before = await dump(engine)
    message = assert_error(await client.delete("/user/payment", headers=alice.headers), 409)
    assert "money is due" in message
    assert await dump(engine) == before
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert [item["id"] for item in listed.json()["items"]] == [method]


async def test_delete_is_refused_while_an_invoice_is_unpaid(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    """Only total_due was looked at: with an invoice still open (a purchase whose charge
    failed, a period's fee being dunned) the cards were detached and the information forgotten,
    although the README says open invoices make it a 409 too."""
    alice = await world.user()
    await client.post("/user/payment", json=BILLING, headers=alice.headers)
    method = await attach(client, alice, "pm_card_chargeCustomerFail")
    bought = await client.post(
        "/user/payment/credits", json={"amount": "25.00"}, headers=alice.headers
    )
    assert bought.status_code == 402, bought.text
    [invoice] = (await client.get("/user/payment/invoices", headers=alice.headers)).json()
    assert (invoice["status"], invoice["amount_remaining"]) == ("open", "25.00")
    before = await dump(engine)
    message = assert_error(await client.delete("/user/payment", headers=alice.headers), 409)
    assert f"invoice {invoice['number']} is unpaid" in message
    assert await dump(engine) == before
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert [item["id"] for item in listed.json()["items"]] == [method]


async def test_delete_detaches_the_cards(client: httpx.AsyncClient, world: World) -> None:
    alice = await world.user()
    await client.post("/user/payment", json=BILLING, headers=alice.headers)
    await attach(client, alice, "pm_card_visa")
    await attach(client, alice, "pm_card_mastercard")
    assert (await client.delete("/user/payment", headers=alice.headers)).status_code == 204
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert listed.json() == {"items": [], "next_page": None}


async def test_delinquent_is_dunnings_mark(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    from zoopay.payments.service import set_delinquent

    alice = await world.user()
    await client.post("/user/payment", json=BILLING, headers=alice.headers)
    async with transaction(engine) as conn:
        await set_delinquent(conn, customer=alice.user.customer, delinquent=True, now=clock.now)
    assert (await client.get("/user/payment", headers=alice.headers)).json()["delinquent"] is True


# -- intents, confirm, methods


async def test_intent_confirm_list_default_delete(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    intent = await client.post("/user/payment/intent", headers=alice.headers)
    assert intent.status_code == 201
    secret = intent.json()["client_secret"]
    assert set(intent.json()) == {"client_secret"} and re.match(r"^seti_\w+_secret_", secret)

    confirmed = await client.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": secret, "payment_method": "pm_card_visa"},
    )
    assert confirmed.status_code == 200, confirmed.text
    first = confirmed.json()["id"]
    assert confirmed.json() == visa(first, clock)

    before = await dump(engine)
    used = await client.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": secret, "payment_method": "pm_card_mastercard"},
    )
    assert_error(used, 409)
    assert await dump(engine) == before

    clock.advance(minutes=1)
    second = await attach(client, alice, "pm_card_mastercard")
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    first_card = visa(first, clock.__class__(clock.now.replace(minute=0)))
    second_card = visa(second, clock, "pm_card_mastercard")
    assert listed.json() == {"items": [first_card, second_card], "next_page": None}

    made = await client.post(f"/user/payment/methods/{second}/default", headers=alice.headers)
    assert made.status_code == 204 and made.content == b""
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert [item["id"] for item in listed.json()["items"]] == [second, first]

    removed = await client.delete(f"/user/payment/methods/{second}", headers=alice.headers)
    assert removed.status_code == 204
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert [item["id"] for item in listed.json()["items"]] == [first]
    assert_error(await client.delete(f"/user/payment/methods/{second}", headers=alice.headers), 404)


async def test_a_declined_card_is_a_402_and_attaches_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    intent = await client.post("/user/payment/intent", headers=alice.headers)
    before = await dump(engine)
    declined = await client.post(
        "/processor/setup-intents/confirm",
        json={
            "client_secret": intent.json()["client_secret"],
            "payment_method": "pm_card_visa_chargeDeclined",
        },
    )
    assert assert_error(declined, 402, "card_declined") == "Your card was declined."
    assert await dump(engine) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"client_secret": "seti_x_secret_y", "payment_method": "pm_card_visa"}, 404),
        ({"client_secret": "", "payment_method": "pm_card_visa"}, 400),
        ({"client_secret": "s", "payment_method": "pm_card_visa", "extra": 1}, 400),
        ({"client_secret": "s"}, 400),
    ],
)
async def test_confirm_refuses_bad_secrets_and_bodies(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, body: Any, status: int
) -> None:
    alice = await world.user()
    await client.post("/user/payment/intent", headers=alice.headers)
    before = await dump(engine)
    assert_error(await client.post("/processor/setup-intents/confirm", json=body), status)
    assert await dump(engine) == before


async def test_confirm_with_a_token_that_is_no_test_card_is_a_400(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    intent = await client.post("/user/payment/intent", headers=alice.headers)
    before = await dump(engine)
    refused = await client.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": intent.json()["client_secret"], "payment_method": "pm_card_x"},
    )
    assert "pm_card_visa" in assert_error(refused, 400)
    assert await dump(engine) == before


async def test_another_customers_method_is_a_404(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice, mallory, nobody = await world.user(), await world.user(), await world.user()
    method = await attach(client, alice, "pm_card_visa")
    await attach(client, mallory, "pm_card_mastercard")
    before = await dump(engine)
    for call in (
        client.delete(f"/user/payment/methods/{method}", headers=mallory.headers),
        client.post(f"/user/payment/methods/{method}/default", headers=mallory.headers),
    ):
        assert_error(await call, 404)
    # A caller with no processor customer at all gets the same answer.
    assert_error(
        await client.delete(f"/user/payment/methods/{method}", headers=nobody.headers), 404
    )
    assert await dump(engine) == before


async def test_methods_page_by_limit_and_token(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    alice = await world.user()
    ids = []
    for token in ("pm_card_visa", "pm_card_mastercard", "pm_card_chargeCustomerFail"):
        ids.append(await attach(client, alice, token))
        clock.advance(minutes=1)
    # The first attached is the default; then newest first.
    order = [ids[0], ids[2], ids[1]]
    seen, token = [], None
    while True:
        params = {"limit": "1", **({"page_token": token} if token else {})}
        page = await client.get("/user/payment/methods", params=params, headers=alice.headers)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        token = page.json()["next_page"]
        if token is None:
            break
    assert seen == order
    bad = base64.urlsafe_b64encode(b"nonsense").decode()
    for page_token in (bad, "!!", "cGF5bWVudC1tZXRob2RzOi0x"):
        refused = await client.get(
            "/user/payment/methods", params={"page_token": page_token}, headers=alice.headers
        )
        assert "page_token" in assert_error(refused, 400)


async def test_no_processor_customer_lists_nothing_and_makes_none(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    listed = await client.get("/user/payment/methods", headers=alice.headers)
    assert listed.json() == {"items": [], "next_page": None}
    assert await processor_id(engine, alice.id) is None


# -- the card-management page

PAGE_FIELD = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


async def test_the_portal_link_signs_in_once_to_the_consoles_payment_methods(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    """On the embedded processor the card page is the console's: the link is a single-use
    console sign-in that opens the payment methods, with a back link to `return_url`."""
    alice = await world.user()
    await attach(client, alice, "pm_card_visa")
    back = "https://app.example.com/billing?tab=cards"
    link = await client.get(
        "/user/payment/method-portal-link", params={"return_url": back}, headers=alice.headers
    )
    assert link.status_code == 303, link.text
    location = link.headers["location"]
    assert location.startswith("/console/link?secret=zcl_")
    query = parse_qs(urlsplit(location).query)
    assert query["next"] == ["/console/user/billing?" + urlencode({"return_url": back})]

    client.cookies.clear()
    page = await client.get(location)  # opening it (a link scanner) does not spend it
    assert page.status_code == 200
    form = {name: html.unescape(value) for name, value in PAGE_FIELD.findall(page.text)}
    assert set(form) == {"secret", "next"}
    signed_in = await client.post("/console/link", data=form, headers=FORM)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == query["next"][0]
    billing = await client.get(signed_in.headers["location"])
    assert billing.status_code == 200
    assert "visa ···· 4242" in billing.text
    assert f'<a href="{html.escape(back)}">Back to where you came from</a>' in billing.text

    # Once only.
    client.cookies.clear()
    again = await client.post("/console/link", data=form, headers=FORM)
    assert again.status_code == 401 and "used already" in again.text


async def test_a_portal_link_expires_unopened(
    client: httpx.AsyncClient, world: World, clock: Clock
) -> None:
    alice = await world.user()
    link = await client.get("/user/payment/method-portal-link", headers=alice.headers)
    secret = parse_qs(urlsplit(link.headers["location"]).query)["secret"][0]
    clock.advance(minutes=16)
    late = await client.post("/console/link", data={"secret": secret}, headers=FORM)
    assert late.status_code == 401


@pytest.mark.parametrize("next_page", ["https://evil.example/", "//evil.example/", "/x"])
async def test_a_sign_in_link_leads_to_console_pages_only(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock, next_page: str
) -> None:
    alice = await world.user()
    link = await client.get("/user/payment/method-portal-link", headers=alice.headers)
    secret = parse_qs(urlsplit(link.headers["location"]).query)["secret"][0]
    client.cookies.clear()
    signed_in = await client.post(
        "/console/link", data={"secret": secret, "next": next_page}, headers=FORM
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console/"


@pytest.mark.parametrize("return_url", ["javascript:alert(1)", "/relative", "ftp://x"])
async def test_the_return_url_is_http_or_https(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, return_url: str
) -> None:
    alice = await world.user()
    before = await dump(engine)
    refused = await client.get(
        "/user/payment/method-portal-link",
        params={"return_url": return_url},
        headers=alice.headers,
    )
    assert "return_url" in assert_error(refused, 400)
    assert await dump(engine) == before


# -- tax


async def tax(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/user/payment/tax", headers=headers)


@pytest.mark.parametrize(
    ("address", "vat_id", "problem"),
    [
        (None, None, "billing address is missing"),
        ({"country": "US"}, None, "postal code (zip) is missing"),
        ({"country": "US", "zip": "9410"}, None, "'9410' is not one of US"),
        ({"country": "GB", "zip": "SW1A 1AA"}, None, None),
        ({"country": "AE"}, None, None),
        ({"country": "DE", "zip": "10115"}, "DE136695976", None),
        ({"country": "FR", "zip": "75001"}, "DE136695976", "not of the billing country FR"),
        ({"country": "GR", "zip": "10431"}, "EL094259216", None),
    ],
)
async def test_tax_readiness(
    client: httpx.AsyncClient,
    world: World,
    address: dict[str, str] | None,
    vat_id: str | None,
    problem: str | None,
) -> None:
    alice = await world.user()
    assert "no billing information" in assert_error(await tax(client, alice.headers), 400)
    body = {"address": address, "name": "A", "phone": ""}
    assert (await client.post("/user/payment", json=body, headers=alice.headers)).is_success
    if vat_id is not None:
        set_id = await client.put(
            "/user/payment/tax-id", json={"vat_id": vat_id}, headers=alice.headers
        )
        assert set_id.status_code == 200, set_id.text
        assert set_id.json()["metadata"] == {"vat_id": vat_id}
    answer = await tax(client, alice.headers)
    if problem is None:
        assert answer.status_code == 204 and answer.content == b""
    else:
        assert problem in assert_error(answer, 400)


async def test_a_vat_id_must_pass_its_checksum(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    alice = await world.user()
    await client.post("/user/payment", json=BILLING, headers=alice.headers)
    before = await dump(engine)
    refused = await client.put(
        "/user/payment/tax-id", json={"vat_id": "DE136695977"}, headers=alice.headers
    )
    assert "not a valid EU VAT id" in assert_error(refused, 400)
    assert await dump(engine) == before
    spaced = await client.put(
        "/user/payment/tax-id", json={"vat_id": "de 136 695 976"}, headers=alice.headers
    )
    assert spaced.json()["metadata"] == {"vat_id": "DE136695976"}
    cleared = await client.put("/user/payment/tax-id", json={"vat_id": None}, headers=alice.headers)
    assert cleared.json()["metadata"] == {}


async def test_a_vat_id_needs_billing_information(client: httpx.AsyncClient, world: World) -> None:
    alice = await world.user()
    refused = await client.put(
        "/user/payment/tax-id", json={"vat_id": "DE136695976"}, headers=alice.headers
    )
    assert_error(refused, 404)


# -- the usage threshold

DEFAULT_VIEW = {
    "admin_amount": None,
    "admin_bounds": {"maximum_amount": "1000000.00", "minimum_amount": "1.00"},
    "customer_amount": None,
    "customer_bounds": {"maximum_amount": "10000.00", "minimum_amount": "10.00"},
    "default_amount": "100.00",
    "effective_amount": "100.00",
    "source": "system_default",
    "version": 0,
}
THRESHOLD = "/user/billing/usage-collection-threshold"


async def test_the_usage_threshold(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    customer = alice.user.customer
    assert (await client.get(THRESHOLD, headers=alice.headers)).json() == DEFAULT_VIEW

    chosen = await client.put(
        THRESHOLD, json={"amount": 250.5, "expected_version": 0}, headers=alice.headers
    )
    assert chosen.status_code == 200, chosen.text
    mine = {
        **DEFAULT_VIEW,
        "customer_amount": "250.50",
        "effective_amount": "250.50",
        "source": "customer",
        "version": 1,
    }
    assert chosen.json() == mine
    async with reading(engine) as conn:
        assert await effective_usage_threshold(conn, customer=customer) == 250_500_000

    before = await dump(engine)
    stale = await client.put(
        THRESHOLD, json={"amount": "300", "expected_version": 0}, headers=alice.headers
    )
    assert "stale" in assert_error(stale, 409)
    for amount in ("9.99", "10000.01"):
        out = await client.put(
            THRESHOLD, json={"amount": amount, "expected_version": 1}, headers=alice.headers
        )
        assert "between 10.00 and 10000.00" in assert_error(out, 400)
    assert_error(
        await client.delete(THRESHOLD, params={"expected_version": "0"}, headers=alice.headers), 409
    )
    assert await dump(engine) == before

    async with transaction(engine) as conn:
        await set_threshold(
            conn,
            authority=ADMIN_AUTHORITY,
            customer=customer,
            amount_micros=5_000_000,
            expected_version=1,
            now=clock.now,
        )
    admin = {**mine, "admin_amount": "5.00", "effective_amount": "5.00", "source": "admin"}
    assert (await client.get(THRESHOLD, headers=alice.headers)).json() == {**admin, "version": 2}

    reset = await client.delete(THRESHOLD, params={"expected_version": "2"}, headers=alice.headers)
    assert reset.json() == {**admin, "customer_amount": None, "version": 3}
    async with reading(engine) as conn:
        assert await effective_usage_threshold(conn, customer=customer) == 5_000_000


async def test_staff_set_their_own_amount_for_any_user_or_org(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    staff, alice = await world.user(staff=True), await world.user("alice@example.test")
    admin = await world.user()
    org = await world.org(admin)
    mine = (
        await client.put(
            THRESHOLD, json={"amount": "250.50", "expected_version": 0}, headers=alice.headers
        )
    ).json()
    assert mine["version"] == 1
    alices = f"/users/{alice.id}/billing/usage-collection-threshold"
    by_email = f"/users/{alice.email}/billing/usage-collection-threshold"
    assert (await client.get(by_email, headers=staff.headers)).json() == mine

    chosen = await client.put(
        alices, json={"amount": "5", "expected_version": 1}, headers=staff.headers
    )
    staffs = {"admin_amount": "5.00", "effective_amount": "5.00", "source": "admin"}
    admin_view = {**mine, **staffs, "version": 2}
    assert chosen.json() == admin_view
    assert (await client.get(THRESHOLD, headers=alice.headers)).json() == admin_view
    # The customer's own amount changes, and staff's still wins.
    own = await client.put(
        THRESHOLD, json={"amount": 300, "expected_version": 2}, headers=alice.headers
    )
    assert own.json() == {**admin_view, "customer_amount": "300.00", "version": 3}
    async with reading(engine) as conn:
        assert await effective_usage_threshold(conn, customer=alice.user.customer) == 5_000_000

    before = await dump(engine)
    for amount in ("0.99", "1000000.01"):
        out = await client.put(
            alices, json={"amount": amount, "expected_version": 3}, headers=staff.headers
        )
        assert "between 1.00 and 1000000.00 USD for staff" in assert_error(out, 400)
    stale = await client.put(
        alices, json={"amount": "7", "expected_version": 2}, headers=staff.headers
    )
    assert "stale" in assert_error(stale, 409)
    assert_error(
        await client.delete(alices, params={"expected_version": "2"}, headers=staff.headers), 409
    )
    orgs = f"/orgs/{org.id}/billing/usage-collection-threshold"
    for who in (alice, admin):  # not staff: not even for themselves, or their own org
        for path in (alices, orgs):
            assert_error(await client.get(path, headers=who.headers), 403)
            put = await client.put(
                path, json={"amount": "2", "expected_version": 3}, headers=who.headers
            )
            assert_error(put, 403)
            gone = await client.delete(path, params={"expected_version": 3}, headers=who.headers)
            assert_error(gone, 403)
    nobody = "00000000-0000-4000-8000-000000000000"
    for path in (
        f"/users/{nobody}/billing/usage-collection-threshold",
        orgs.replace(org.id, nobody),
    ):
        assert_error(await client.get(path, headers=staff.headers), 404)
        put = await client.put(
            path, json={"amount": "2", "expected_version": 0}, headers=staff.headers
        )
        assert_error(put, 404)
    assert await dump(engine) == before

    reset = await client.delete(alices, params={"expected_version": 3}, headers=staff.headers)
    customers = {"customer_amount": "300.00", "effective_amount": "300.00", "source": "customer"}
    assert reset.json() == {**admin_view, **customers, "admin_amount": None, "version": 4}

    # An org, the same: its admin sees staff's amount; removing it leaves the default.
    orgs_view = await client.put(
        orgs, json={"amount": 1_000_000, "expected_version": 0}, headers=staff.headers
    )
    staffs = {"admin_amount": "1000000.00", "effective_amount": "1000000.00", "source": "admin"}
    org_admin_view = {**DEFAULT_VIEW, **staffs, "version": 1}
    assert orgs_view.json() == org_admin_view
    seen = await client.get("/org/billing/usage-collection-threshold", headers=admin.headers)
    assert seen.json() == org_admin_view
    async with reading(engine) as conn:
        assert await effective_usage_threshold(conn, customer=org.customer) == 10**12
    removed = await client.delete(orgs, params={"expected_version": 1}, headers=staff.headers)
    assert removed.json() == {**DEFAULT_VIEW, "version": 2}
    # Alice's threshold is hers alone: the org's changes left it where it was.
    assert (await client.get(THRESHOLD, headers=alice.headers)).json()["version"] == 4


# -- orgs: admins do what a user does for themselves; members may not


async def test_an_org_admin_manages_the_orgs_payments(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, member = await world.user("admin@acme.test"), await world.user()
    org = await world.org(admin, member)
    created = await client.post("/org/payment", json=BILLING, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == org.billing_email
    assert created.json()["id"] == await processor_id(engine, org.id)
    assert await processor_id(engine, admin.id) is None  # the org's, not the admin's

    method = await attach(client, admin, "pm_card_visa", base="/org")
    listed = await client.get("/org/payment/methods", headers=admin.headers)
    assert listed.json() == {"items": [visa(method, clock)], "next_page": None}
    # The admin's own cards are not the org's.
    assert (await client.get("/user/payment/methods", headers=admin.headers)).json()["items"] == []
    assert (await client.get("/org/payment/tax", headers=admin.headers)).status_code == 204
    threshold = await client.put(
        "/org/billing/usage-collection-threshold",
        json={"amount": 20, "expected_version": 0},
        headers=admin.headers,
    )
    assert threshold.json()["customer_amount"] == "20.00"
    assert (
        await client.post(f"/org/payment/methods/{method}/default", headers=admin.headers)
    ).status_code == 204
    assert (
        await client.delete(f"/org/payment/methods/{method}", headers=admin.headers)
    ).status_code == 204
    link = await client.get("/org/payment/method-portal-link", headers=admin.headers)
    assert link.status_code == 303
    # The admin's own sign-in, to the org's payment methods.
    assert parse_qs(urlsplit(link.headers["location"]).query)["next"] == ["/console/org/billing"]

    before = await dump(engine)
    for method_name, path in [
        ("GET", "/org/payment"),
        ("PUT", "/org/payment"),
        ("DELETE", "/org/payment"),
        ("POST", "/org/payment/intent"),
        ("GET", "/org/payment/methods"),
        ("GET", "/org/payment/tax"),
        ("GET", "/org/billing/usage-collection-threshold"),
        ("GET", "/org/payment/method-portal-link"),
    ]:
        body = BILLING if method_name == "PUT" else None
        refused = await client.request(method_name, path, json=body, headers=member.headers)
        assert_error(refused, 403)
    assert await dump(engine) == before
    assert (await client.delete("/org/payment", headers=admin.headers)).status_code == 204
