"""The console's card form on the stripe processor: Stripe Elements, against localstripe.

The page is rendered in-process (httpx): Stripe.js from js.stripe.com with the publishable key
and the setup intent's client secret, under a Content-Security-Policy that lets Stripe's frames
in. Stripe.js itself cannot run here (no browser against Stripe offline): the SDK confirms the
intent as Stripe.js would, the tests attach the card as Stripe does on confirmation (localstripe
does not), and the form's second step reads the card back and lists it.
"""

import re

import httpx

from tests.processors.conftest import Stripe
from tests.support.console import FORM, sign_in
from tests.support.database import dump
from tests.support.http import bearer, ok
from tests.support.localstripe import PUBLISHABLE_KEY
from zoopay.db.engine import reading
from zoopay.payments.service import processor_customer_id
from zoopay.processors.stripe import StripeProcessor

SECRET = re.compile(r'data-client-secret="(seti_\w+?_secret_\w+)"')


async def card_page(client: httpx.AsyncClient, csrf: str) -> httpx.Response:
    page = await client.post("/console/user/billing/card", data={"csrf": csrf}, headers=FORM)
    assert page.status_code == 200, page.text
    return page


async def confirm_as_stripe_js(processor: StripeProcessor, client_secret: str) -> str:
    """What Stripe.js's confirmCardSetup does with the card typed into Elements, then the
    attachment Stripe makes on confirmation: the setup intent's id."""
    intent_id = client_secret.split("_secret_")[0]
    confirmed = await processor.client.v1.setup_intents.confirm_async(
        intent_id, {"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded" and isinstance(confirmed.payment_method, str)
    assert isinstance(confirmed.customer, str)
    await processor.client.v1.payment_methods.attach_async(
        confirmed.payment_method, {"customer": confirmed.customer}
    )
    return intent_id


async def test_the_card_form_is_stripe_elements_with_the_key_and_the_intents_secret(
    stripe: Stripe,
) -> None:
    client, processor, engine = stripe.client, stripe.processor, stripe.engine
    alice = await stripe.world.user()
    csrf = await sign_in(client, engine, alice, stripe.clock)
    billing = await client.get("/console/user/billing")
    assert 'action="/console/user/billing/card"' in billing.text

    page = await card_page(client, csrf)
    assert '<script src="https://js.stripe.com/v3/"></script>' in page.text
    assert '<script src="/console/static/card.js" defer></script>' in page.text
    assert f'data-stripe-key="{PUBLISHABLE_KEY}"' in page.text
    assert 'id="card-element"' in page.text and 'name="setup_intent" value=""' in page.text
    assert "pm_card_visa" not in page.text  # not the embedded processor's test-card form
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' https://js.stripe.com;" in policy
    assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in policy
    assert "frame-ancestors 'none'" in policy
    match = SECRET.search(page.text)
    assert match is not None
    # The secret is of a setup intent Stripe holds for alice's Stripe customer.
    intent = await processor.client.v1.setup_intents.retrieve_async(
        match.group(1).split("_secret_")[0]
    )
    async with reading(engine) as conn:
        customer_id = await processor_customer_id(conn, customer=alice.user.customer)
    assert (intent.client_secret, intent.customer) == (match.group(1), customer_id)
    assert intent.status == "requires_payment_method"

    script = await client.get("/console/static/card.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "confirmCardSetup" in script.text and "setup_intent" in script.text


async def test_a_card_confirmed_by_stripe_js_is_listed_as_the_default(stripe: Stripe) -> None:
    client, processor, engine = stripe.client, stripe.processor, stripe.engine
    alice, bob = await stripe.world.user(), await stripe.world.user()
    bobs_csrf = await sign_in(client, engine, bob, stripe.clock)
    await card_page(client, bobs_csrf)  # bob is a Stripe customer too
    csrf = await sign_in(client, engine, alice, stripe.clock)
    match = SECRET.search((await card_page(client, csrf)).text)
    assert match is not None
    unconfirmed = match.group(1).split("_secret_")[0]
    done = "/console/user/billing/card/stripe"
    refused = await client.post(
        done, data={"csrf": csrf, "setup_intent": unconfirmed}, headers=FORM
    )
    assert refused.status_code == 409 and "add it again" in refused.text

    intent_id = await confirm_as_stripe_js(processor, match.group(1))
    # Bob cannot take alice's card for his own, nor a forged id do anything.
    bobs_csrf = await sign_in(client, engine, bob, stripe.clock)
    before = await dump(engine)
    for setup_intent, status in [(intent_id, 404), ("seti_x'><script>", 400)]:
        form = {"csrf": bobs_csrf, "setup_intent": setup_intent}
        answer = await client.post(done, data=form, headers=FORM)
        assert answer.status_code == status, answer.text
    assert await dump(engine) == before
    bobs = await ok(await client.get("/user/payment/methods", headers=bearer(bob.token)))
    assert bobs["items"] == []

    csrf = await sign_in(client, engine, alice, stripe.clock)
    listed = await client.post(done, data={"csrf": csrf, "setup_intent": intent_id}, headers=FORM)
    assert listed.status_code == 303 and listed.headers["location"] == "/console/user/billing"
    page = (await client.get("/console/user/billing")).text
    assert "visa ···· 4242" in page
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(alice.token)))
    [method] = methods["items"]
    assert method["card"]["last4"] == "4242"
    row = re.search(rf'data-card="{method["id"]}">(.*?)</tr>', page, re.S)
    assert row is not None and ">default<" in row.group(1)
    # The same confirmation again (a reload) changes nothing.
    again = await client.post(done, data={"csrf": csrf, "setup_intent": intent_id}, headers=FORM)
    assert again.status_code == 303
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(alice.token)))
    assert [m["id"] for m in methods["items"]] == [method["id"]]
