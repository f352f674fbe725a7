"""The console's invoices on the embedded processor: buying credits (an invoice charged at
once), its PDF, paying an open invoice after a failed charge, and staff refunds (once per form,
whatever the retries); members and other customers are kept out."""

import re
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from tests.support.billing import books_are_clean
from tests.support.console import FORM, add_card_by_form, sign_in
from tests.support.database import dump
from tests.support.http import bearer, ok
from zoopay.db.engine import transaction
from zoopay.invoicing.service import mark_uncollectible
from zoopay.payments.service import find_payment_customer, set_delinquent


async def test_a_customer_buys_credits_and_downloads_the_invoice(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    no_card = await client.post(
        "/console/user/credits", data={"csrf": csrf, "amount": "25.00"}, headers=FORM
    )
    assert no_card.status_code == 402
    assert (await add_card_by_form(client, csrf, "pm_card_visa")).status_code == 303
    for amount in ("25.001", "0.50", "abc"):
        bad = await client.post(
            "/console/user/credits", data={"csrf": csrf, "amount": amount}, headers=FORM
        )
        assert bad.status_code == 400, amount
    bought = await client.post(
        "/console/user/credits", data={"csrf": csrf, "amount": "25"}, headers=FORM
    )
    assert bought.status_code == 303, bought.text
    balance = await ok(await client.get("/user/payment/balance", headers=bearer(alice.token)))
    assert balance["stable_api_credits_remaining_monetary_value"] == "25.00"
    invoices = await ok(
        await client.get(
            "/user/payment/invoices", params={"limit": 10}, headers=bearer(alice.token)
        )
    )
    paid = [i for i in invoices["items"] if i["status"] == "paid"]
    assert len(paid) == 1
    page = (await client.get("/console/user/invoices")).text
    row = re.search(rf'data-invoice="{paid[0]["id"]}">(.*?)</tr>', page, re.S)
    assert row is not None and "paid" in row.group(1) and "25.00 USD" in row.group(1)
    pdf = await client.get(f"/console/user/invoices/{paid[0]['id']}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    api_pdf = await client.get(
        f"/user/payment/invoices/{paid[0]['id']}/pdf", headers=bearer(alice.token)
    )
    assert api_pdf.status_code == 200 and api_pdf.content[:5] == pdf.content[:5]


async def test_another_customers_invoice_is_not_found(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice, bob = await world.user(), await world.user()
    bob_csrf = await sign_in(client, engine, bob, clock)
    assert (await add_card_by_form(client, bob_csrf, "pm_card_visa")).status_code == 303
    data = {"csrf": bob_csrf, "amount": "10.00"}
    assert (await client.post("/console/user/credits", data=data, headers=FORM)).status_code == 303
    invoices = await ok(await client.get("/user/payment/invoices", headers=bearer(bob.token)))
    bob_invoice = invoices[0]["id"]
    csrf = await sign_in(client, engine, alice, clock)
    assert (await client.get(f"/console/user/invoices/{bob_invoice}/pdf")).status_code == 404
    before = await dump(engine)
    paid = await client.post(
        f"/console/user/invoices/{bob_invoice}/pay", data={"csrf": csrf}, headers=FORM
    )
    assert paid.status_code == 404
    refund = await client.post(
        f"/console/staff/user/{bob.id}/invoices/{bob_invoice}/refund",
        data={"csrf": csrf, "amount": "1.00", "idempotency_key": "k1"},
        headers=FORM,
    )
    assert refund.status_code == 403
    assert await dump(engine) == before


async def _a_purchase_that_failed(
    client: httpx.AsyncClient, engine: AsyncEngine, clock: Clock, person: Person
) -> str:
    """The person signs in, adds a card whose charges fail and buys 12.00 of credits on the
    console (a 402, the invoice open); answers the session's csrf."""
    csrf = await sign_in(client, engine, person, clock)
    assert (await add_card_by_form(client, csrf, "pm_card_chargeCustomerFail")).status_code == 303
    failed = await client.post(
        "/console/user/credits", data={"csrf": csrf, "amount": "12.00"}, headers=FORM
    )
    assert failed.status_code == 402
    return csrf


async def _pay_with_a_visa(
    client: httpx.AsyncClient, csrf: str, person: Person, invoice_id: str
) -> Any:
    """A visa added and made the default on the console, then the invoice paid with Pay now;
    answers the invoice as the API shows it after."""
    assert (await add_card_by_form(client, csrf, "pm_card_visa")).status_code == 303
    methods = await ok(await client.get("/user/payment/methods", headers=bearer(person.token)))
    visa = next(m["id"] for m in methods["items"] if m["card"]["last4"] == "4242")
    await client.post(
        f"/console/user/billing/cards/{visa}/default", data={"csrf": csrf}, headers=FORM
    )
    paid = await client.post(
        f"/console/user/invoices/{invoice_id}/pay", data={"csrf": csrf}, headers=FORM
    )
    assert paid.status_code == 303, paid.text
    return await ok(
        await client.get(f"/user/payment/invoices/{invoice_id}", headers=bearer(person.token))
    )


async def test_an_open_invoice_is_paid_now_after_a_failed_charge(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await _a_purchase_that_failed(client, engine, clock, alice)
    overview = (await client.get("/console/user/")).text
    assert "A payment failed" in overview
    page = (await client.get("/console/user/invoices")).text
    [invoice_id] = re.findall(r"/console/user/invoices/([0-9a-f-]{36})/pay", page)
    assert "(payment failed)" in page
    invoice = await _pay_with_a_visa(client, csrf, alice, invoice_id)
    assert invoice["status"] == "paid"
    assert "A payment failed" not in (await client.get("/console/user/")).text


async def test_an_uncollectible_invoice_is_paid_now_and_the_delinquency_ends(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await _a_purchase_that_failed(client, engine, clock, alice)
    [invoice] = await ok(await client.get("/user/payment/invoices", headers=bearer(alice.token)))
    async with transaction(engine) as conn:  # as dunning gives up on an invoice
        await mark_uncollectible(conn, invoice_id=invoice["id"], now=clock.now)
        await set_delinquent(conn, customer=alice.user.customer, delinquent=True, now=clock.now)
    page = (await client.get("/console/user/invoices")).text
    assert re.findall(r"/console/user/invoices/([0-9a-f-]{36})/pay", page) == [invoice["id"]]
    after = await _pay_with_a_visa(client, csrf, alice, invoice["id"])
    assert (after["status"], after["amount_paid"]) == ("paid", "12.00")
    balance = await ok(await client.get("/user/payment/balance", headers=bearer(alice.token)))
    assert balance["stable_api_credits_remaining_monetary_value"] == "12.00"
    async with engine.connect() as conn:
        found = await find_payment_customer(conn, customer=alice.user.customer)
    assert found is not None and found.delinquent is False


async def test_staff_refund_an_invoice_once_per_form(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    assert (await add_card_by_form(client, csrf, "pm_card_visa")).status_code == 303
    data = {"csrf": csrf, "amount": "20.00"}
    assert (await client.post("/console/user/credits", data=data, headers=FORM)).status_code == 303
    staff_csrf = await sign_in(client, engine, staff, clock)
    page = (await client.get(f"/console/staff/user/{alice.id}")).text
    [(invoice_id, key)] = re.findall(
        r'/invoices/([0-9a-f-]{36})/refund" class="inline">\s*'
        r'<input type="hidden" name="csrf" value="[0-9a-f]+">\s*'
        r'<input type="hidden" name="idempotency_key" value="([0-9a-f]+)">',
        page,
    )
    path = f"/console/staff/user/{alice.id}/invoices/{invoice_id}/refund"
    form = {"csrf": staff_csrf, "amount": "5.00", "idempotency_key": key}
    for _ in range(2):  # a double click
        response = await client.post(path, data=form, headers=FORM)
        assert response.status_code == 303, response.text
    balance = await ok(await client.get("/user/payment/balance", headers=bearer(alice.token)))
    assert balance["stable_api_credits_remaining_monetary_value"] == "15.00"
    page = (await client.get(f"/console/staff/user/{alice.id}")).text
    row = re.search(rf'data-invoice="{invoice_id}">(.*?)</tr>', page, re.S)
    assert row is not None and 'data-label="Refunded">5.00 USD' in row.group(1)
    too_much = await client.post(
        path, data={**form, "amount": "100.00", "idempotency_key": "other"}, headers=FORM
    )
    assert too_much.status_code == 400


async def test_a_member_cannot_reach_the_orgs_invoices(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, member = await world.user(), await world.user()
    await world.org(admin, member)
    csrf = await sign_in(client, engine, member, clock)
    assert (await client.get("/console/org/invoices")).status_code == 403
    response = await client.post(
        "/console/org/credits", data={"csrf": csrf, "amount": "10.00"}, headers=FORM
    )
    assert response.status_code == 403


async def _bought_with_a_card_that_needs_authentication(
    client: httpx.AsyncClient, engine: AsyncEngine, person: Person, clock: Clock
) -> tuple[str, str]:
    """25.00 of credits bought with `pm_card_authenticationRequired`: a 402, the invoice open
    and its charge waiting for the bank. Answers the session's CSRF token and the invoice."""
    csrf = await sign_in(client, engine, person, clock)
    assert (
        await add_card_by_form(client, csrf, "pm_card_authenticationRequired")
    ).status_code == 303
    bought = await client.post(
        "/console/user/credits", data={"csrf": csrf, "amount": "25.00"}, headers=FORM
    )
    assert bought.status_code == 402, bought.text
    [invoice] = await ok(await client.get("/user/payment/invoices", headers=bearer(person.token)))
    assert invoice["status"] == "open"
    return csrf, str(invoice["id"])


async def _invoice_and_credits(
    client: httpx.AsyncClient, person: Person, invoice_id: str
) -> tuple[str, str, str]:
    """What the API says: the invoice's status and amount paid, the stable credits."""
    headers = bearer(person.token)
    invoice = await ok(await client.get(f"/user/payment/invoices/{invoice_id}", headers=headers))
    balance = await ok(await client.get("/user/payment/balance", headers=headers))
    stable = balance["stable_api_credits_remaining_monetary_value"]
    return invoice["status"], invoice["amount_paid"], stable


def _row(page: str, invoice_id: str) -> str:
    row = re.search(rf'data-invoice="{invoice_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    return row.group(1)


async def test_a_payment_that_waits_for_the_bank_is_approved_on_zoopays_bank_page(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf, invoice_id = await _bought_with_a_card_that_needs_authentication(
        client, engine, alice, clock
    )
    row = _row((await client.get("/console/user/invoices")).text, invoice_id)
    assert "waits for your bank" in row and f"/invoices/{invoice_id}/authenticate" in row
    page = await client.get(f"/console/user/invoices/{invoice_id}/authenticate")
    assert page.status_code == 200
    assert re.search(r'data-testid="waiting-payment">.*<strong>25.00 USD</strong>', page.text)
    path = f"/console/user/invoices/{invoice_id}/authenticate"
    bad = await client.post(path, data={"csrf": csrf, "answer": "maybe"}, headers=FORM)
    assert bad.status_code == 400
    approved = await client.post(path, data={"csrf": csrf, "answer": "approve"}, headers=FORM)
    assert approved.status_code == 303, approved.text
    # Paid at once, and the credits delivered: the API says so.
    assert await _invoice_and_credits(client, alice, invoice_id) == ("paid", "25.00", "25.00")
    assert "authenticate" not in _row((await client.get("/console/user/invoices")).text, invoice_id)
    # Nothing waits any more: a second answer is refused, and pays nothing twice.
    again = await client.post(path, data={"csrf": csrf, "answer": "approve"}, headers=FORM)
    assert again.status_code == 409
    assert (await client.get(path)).status_code == 409
    await books_are_clean(engine)


async def test_a_refused_authentication_leaves_the_invoice_open_and_credits_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf, invoice_id = await _bought_with_a_card_that_needs_authentication(
        client, engine, alice, clock
    )
    path = f"/console/user/invoices/{invoice_id}/authenticate"
    refused = await client.post(path, data={"csrf": csrf, "answer": "refuse"}, headers=FORM)
    assert refused.status_code == 303, refused.text
    assert await _invoice_and_credits(client, alice, invoice_id) == ("open", "0.00", "0.00")
    row = _row((await client.get("/console/user/invoices")).text, invoice_id)
    assert "payment failed" in row and "authenticate" not in row
    await books_are_clean(engine)


async def test_another_customers_waiting_payment_cannot_be_answered(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice, bob = await world.user(), await world.user()
    _, invoice_id = await _bought_with_a_card_that_needs_authentication(
        client, engine, alice, clock
    )
    csrf = await sign_in(client, engine, bob, clock)
    path = f"/console/user/invoices/{invoice_id}/authenticate"
    before = await dump(engine)
    assert (await client.get(path)).status_code == 404
    answer = await client.post(path, data={"csrf": csrf, "answer": "approve"}, headers=FORM)
    assert answer.status_code == 404
    csrf = await sign_in(client, engine, alice, clock)
    no_csrf = await client.post(path, data={"answer": "approve"}, headers=FORM)
    assert no_csrf.status_code == 403
    assert _without_sessions(await dump(engine)) == _without_sessions(before)


def _without_sessions(tables: dict[str, Any]) -> dict[str, Any]:
    return {name: rows for name, rows in tables.items() if not name.startswith("console_")}
