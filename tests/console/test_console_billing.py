"""The console's billing page, on the embedded processor: a card through zoopay's own form
(setup intent, then confirm), default and removal, billing information and tax status, the
usage threshold; the API sees each change, and another customer's cards stay out of reach."""

import html
import re
from urllib.parse import urlencode

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World
from tests.support.console import FORM, SECRET, add_card_by_form, sign_in
from tests.support.database import dump
from tests.support.http import bearer, ok


async def test_a_customer_adds_a_card_makes_it_default_and_removes_one(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    assert (await add_card_by_form(client, csrf, "pm_card_visa")).status_code == 303
    assert (await add_card_by_form(client, csrf, "pm_card_mastercard")).status_code == 303
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(alice.token)))
    by_brand = {m["card"]["brand"]: m for m in methods["items"]}
    assert set(by_brand) == {"visa", "mastercard"}
    page = (await client.get("/console/user/billing")).text
    assert "visa ···· 4242" in page and "mastercard ···· 4444" in page
    mastercard = by_brand["mastercard"]["id"]
    made = await client.post(
        f"/console/user/billing/cards/{mastercard}/default", data={"csrf": csrf}, headers=FORM
    )
    assert made.status_code == 303
    page = (await client.get("/console/user/billing")).text
    row = re.search(rf'data-card="{mastercard}">(.*?)</tr>', page, re.S)
    assert row is not None and ">default<" in row.group(1)
    visa = by_brand["visa"]["id"]
    gone = await client.post(
        f"/console/user/billing/cards/{visa}/remove", data={"csrf": csrf}, headers=FORM
    )
    assert gone.status_code == 303
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(alice.token)))
    assert [m["id"] for m in methods["items"]] == [mastercard]


async def test_a_declined_card_attaches_nothing_and_a_secret_works_once(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    declined = await add_card_by_form(client, csrf, "pm_card_visa_chargeDeclined")
    assert declined.status_code == 402
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(alice.token)))
    assert methods["items"] == []
    form = await client.post("/console/user/billing/card", data={"csrf": csrf}, headers=FORM)
    match = SECRET.search(form.text)
    assert match is not None
    data = {"csrf": csrf, "client_secret": match.group(1), "card": "pm_card_visa"}
    first = await client.post("/console/user/billing/card/confirm", data=data, headers=FORM)
    assert first.status_code == 303
    again = await client.post("/console/user/billing/card/confirm", data=data, headers=FORM)
    assert again.status_code == 409


async def test_another_customers_card_is_not_found(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice, bob = await world.user(), await world.user()
    bob_csrf = await sign_in(client, engine, bob, clock)
    assert (await add_card_by_form(client, bob_csrf, "pm_card_visa")).status_code == 303
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(bob.token)))
    [bob_card] = [m["id"] for m in methods["items"]]
    csrf = await sign_in(client, engine, alice, clock)
    before = await dump(engine)
    for action in ("default", "remove"):
        response = await client.post(
            f"/console/user/billing/cards/{bob_card}/{action}", data={"csrf": csrf}, headers=FORM
        )
        assert response.status_code == 404, action
    assert await dump(engine) == before
    assert bob_card not in (await client.get("/console/user/billing")).text


async def test_billing_information_tax_status_and_threshold(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    page = (await client.get("/console/user/billing")).text
    assert "Not ready for automatic tax: no billing information" in page
    bad = await client.post(
        "/console/user/billing/info",
        data={"csrf": csrf, "name": "Alice", "country": "ZZZ"},
        headers=FORM,
    )
    assert bad.status_code == 400
    saved = await client.post(
        "/console/user/billing/info",
        data={
            "csrf": csrf,
            "name": "Alice Example",
            "phone": "+14155550100",
            "street1": "1 Market St",
            "city": "San Francisco",
            "state": "CA",
            "zip": "94107",
            "country": "us",
        },
        headers=FORM,
    )
    assert saved.status_code == 303, saved.text
    info = await ok(await client.get("/user/payment", headers=bearer(alice.token)))
    assert info["name"] == "Alice Example" and info["address"]["country"] == "US"
    tax = await client.get("/user/payment/tax", headers=bearer(alice.token))
    page = (await client.get("/console/user/billing")).text
    if tax.status_code == 204:
        assert "Ready for automatic tax." in page
    else:
        assert "Not ready for automatic tax" in page
    threshold = await ok(
        await client.get("/user/billing/usage-collection-threshold", headers=bearer(alice.token))
    )
    version = str(threshold["version"])
    stale = await client.post(
        "/console/user/billing/threshold",
        data={"csrf": csrf, "amount": "50", "version": str(threshold["version"] + 1)},
        headers=FORM,
    )
    assert stale.status_code == 409
    done = await client.post(
        "/console/user/billing/threshold",
        data={"csrf": csrf, "amount": "50", "version": version},
        headers=FORM,
    )
    assert done.status_code == 303
    threshold = await ok(
        await client.get("/user/billing/usage-collection-threshold", headers=bearer(alice.token))
    )
    assert threshold["customer_amount"] == "50.00" and threshold["effective_amount"] == "50.00"
    assert 'data-testid="threshold">50.00 USD' in (await client.get("/console/user/billing")).text


async def test_an_org_member_cannot_reach_the_orgs_billing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, member = await world.user(), await world.user()
    await world.org(admin, member)
    csrf = await sign_in(client, engine, member, clock)
    assert (await client.get("/console/org/billing")).status_code == 403
    before = await dump(engine)
    refused = await client.post("/console/org/billing/card", data={"csrf": csrf}, headers=FORM)
    assert refused.status_code == 403
    assert await dump(engine) == before
    admin_csrf = await sign_in(client, engine, admin, clock)
    assert (
        await add_card_by_form(client, admin_csrf, "pm_card_visa", kind="org")
    ).status_code == 303
    methods = await ok(await client.get("/org/payment/methods", headers=bearer(admin.token)))
    assert len(methods["items"]) == 1


ACTION = re.compile(r'<form method="post" action="([^"]+)"')


async def test_the_back_link_outlives_the_pages_forms(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """A customer sent here by method-portal-link with a `return_url` adds a card, saves the
    billing information and sets the threshold: after each post the page still leads back."""
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    back = "https://app.example.com/settings?tab=billing&x=1"
    link = f'<a href="{html.escape(back)}">Back to where you came from</a>'
    query = "?" + urlencode({"return_url": back})
    page = (await client.get("/console/user/billing" + query)).text
    assert link in page
    actions = {html.unescape(a) for a in ACTION.findall(page)}
    assert {
        f"/console/user/billing/{step}{query}" for step in ("card", "info", "tax-id", "threshold")
    } <= actions

    card_form = await client.post(
        f"/console/user/billing/card{query}", data={"csrf": csrf}, headers=FORM
    )
    assert f"/console/user/billing/card/confirm{html.escape(query)}" in card_form.text
    secret = SECRET.search(card_form.text)
    assert secret is not None
    added = await client.post(
        f"/console/user/billing/card/confirm{query}",
        data={"csrf": csrf, "client_secret": secret.group(1), "card": "pm_card_visa"},
        headers=FORM,
    )
    assert added.status_code == 303
    assert added.headers["location"] == "/console/user/billing" + query
    page = (await client.get(added.headers["location"])).text
    assert "visa ···· 4242" in page and link in page
    [card] = re.findall(r'data-card="([^"]+)"', page)
    assert html.unescape(f"/console/user/billing/cards/{card}/remove{query}") in {
        html.unescape(a) for a in ACTION.findall(page)
    }
    saved = await client.post(
        f"/console/user/billing/info{query}",
        data={"csrf": csrf, "name": "Alice", "zip": "94107", "country": "US"},
        headers=FORM,
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/console/user/billing" + query


async def test_a_back_link_that_is_not_http_is_refused_on_a_post(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    before = await dump(engine)
    # The last: refused as the page itself refuses it (a `$` of Python's re also matches
    # before a final newline), not saved and then shown as a 400 page.
    bad = ("javascript:alert(1)", "//evil.example/", "https://" + "a" * 2048, "https://a.example\n")
    for back in bad:
        refused = await client.post(
            "/console/user/billing/info?" + urlencode({"return_url": back}),
            data={"csrf": csrf, "name": "Alice", "zip": "94107", "country": "US"},
            headers=FORM,
        )
        assert refused.status_code == 400, back
        assert "return_url" in refused.text
    assert await dump(engine) == before


async def test_a_threshold_form_whose_version_is_no_number_is_refused(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """A version that str.isdigit() takes but int() cannot read ("²"), on the customer's form
    and on staff's: a 400 that says to reload, nothing changed (not an internal error)."""
    staff, alice = await world.user(staff=True), await world.user()
    for person, path in (
        (alice, "/console/user/billing/threshold"),
        (staff, f"/console/staff/user/{alice.id}/threshold"),
    ):
        csrf = await sign_in(client, engine, person, clock)
        refused = await client.post(
            path, data={"csrf": csrf, "amount": "50", "version": "²"}, headers=FORM
        )
        assert refused.status_code == 400 and "reload the page" in refused.text, path
    threshold = await ok(
        await client.get("/user/billing/usage-collection-threshold", headers=bearer(alice.token))
    )
    assert (threshold["customer_amount"], threshold["admin_amount"]) == (None, None)
    assert threshold["version"] == 0
