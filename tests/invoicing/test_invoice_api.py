"""Invoices over HTTP on the embedded processor: buying credits, paying, listing in both SDK
shapes, the PDF and page by signed link, refunds, another customer's invoice, bad input."""

import io
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World, app_client
from tests.support.database import dump
from tests.support.http import ok
from tests.support.processor import (
    AUTHENTICATES,
    DECLINES,
    VISA,
    embedded,
    processor_customer,
    refunded_cents,
    succeeded_cents,
)
from zoopay.accounts import service as accounts
from zoopay.app import create_app
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import orgs
from zoopay.invoicing.service import issue_invoice, usage_line
from zoopay.journal.service import verify
from zoopay.ledger.service import Customer
from zoopay.payments.service import Address, BillingDetails, save_billing_info


@pytest.fixture
async def client(
    database_url: str, engine: AsyncEngine, catalog: Catalog, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        tax_rates={"DE": Decimal("0.19")},
        invoice_issuer="Zoopay Test Ltd",
        invoice_issuer_address="1 Ledger Lane, Testville",
    )
    app = create_app(settings, engine=engine, catalog=catalog)
    async with app_client(app, clock) as client:
        yield client


async def with_card(engine: AsyncEngine, clock: Clock, person: Person, card: str | None) -> str:
    processor = embedded(engine, lambda: clock.now)
    return await processor_customer(engine, processor, person.user.customer, clock.now, card)


async def stable(client: httpx.AsyncClient, person: Person) -> str:
    balance = await ok(await client.get("/user/payment/balance", headers=person.headers))
    return str(balance["stable_api_credits_remaining_monetary_value"])


async def books_clean(engine: AsyncEngine) -> None:
    async with reading(engine) as conn:
        assert await verify(conn) == []


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_buying_credits_issues_a_paid_invoice_and_grows_the_stable_bucket(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    person = await world.user()
    await with_card(engine, clock, person, VISA)
    invoice = await ok(
        await client.post(
            "/user/payment/credits", json={"amount": "25.00"}, headers=person.headers
        ),
        201,
    )
    assert invoice["status"] == "paid" and invoice["paid"] is True
    assert (invoice["total"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        "25.00",
        "25.00",
        "0.00",
    )
    assert (invoice["subtotal"], invoice["tax"], invoice["amount_refunded"]) == (
        "25.00",
        "0.00",
        "0.00",
    )
    assert invoice["number"] == "ZP-000001" and invoice["attempt_count"] == 1
    assert invoice["customer_id"] == person.id and invoice["customer_email"] == person.email
    assert [(line["amount"], line["metadata"]) for line in invoice["lines"]] == [
        ("25.00", {"kind": "credits"})
    ]
    assert await stable(client, person) == "25.00"
    assert await succeeded_cents(engine) == 2500

    # kittycad 1.2.0's listing is an array; with limit it is a results page.
    listed = await ok(await client.get("/user/payment/invoices", headers=person.headers))
    assert [item["id"] for item in listed] == [invoice["id"]]
    assert "amount_refunded" not in listed[0]
    page = await ok(await client.get("/user/payment/invoices?limit=1", headers=person.headers))
    assert [item["id"] for item in page["items"]] == [invoice["id"]]
    assert page["next_page"] is None

    # The PDF by its link, with no token, says what the invoice says.
    pdf = await client.get(relative(invoice["pdf"]))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in (
        "Invoice",
        "Zoopay Test Ltd",
        "1 Ledger Lane, Testville",
        "ZP-000001",
        person.email,
        "Prepaid API credits",
        "Subtotal",
        "25.00 USD",
        "Amount paid",
        "Amount due",
        "0.00 USD",
        "paid",
    ):
        assert expected in text, (expected, text)
    page_html = await client.get(relative(invoice["url"]))
    assert page_html.status_code == 200 and "ZP-000001" in page_html.text
    assert "25.00 USD" in page_html.text
    # The authenticated PDF too.
    own_pdf = await client.get(
        f"/user/payment/invoices/{invoice['id']}/pdf", headers=person.headers
    )
    assert own_pdf.status_code == 200 and own_pdf.content.startswith(b"%PDF")
    await books_clean(engine)


async def test_tax_comes_from_the_billing_country_and_is_its_own_amount(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    person = await world.user()
    await with_card(engine, clock, person, VISA)
    async with transaction(engine) as conn:
        await save_billing_info(
            conn,
            customer=person.user.customer,
            details=BillingDetails(name="Ada GmbH", address=Address(country="DE")),
            creating=True,
            now=clock.now,
        )
    invoice = await ok(
        await client.post(
            "/user/payment/credits", json={"amount": "10.00"}, headers=person.headers
        ),
        201,
    )
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("10.00", "1.90", "11.90")
    assert invoice["metadata"] == {"tax_rate": "0.19", "tax_country": "DE"}
    assert await stable(client, person) == "10.00"  # the credits bought, not the tax
    assert await succeeded_cents(engine) == 1190
    pdf = await client.get(relative(invoice["pdf"]))
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "Tax (19%, DE)" in text and "1.90 USD" in text and "11.90 USD" in text
    assert "Ada GmbH" in text
    await books_clean(engine)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (None, "no payment method is on file"),
        (DECLINES, "Your card was declined"),
        (AUTHENTICATES, "authenticate"),
    ],
)
async def test_a_failed_purchase_is_a_402_credits_nothing_and_leaves_the_invoice_open(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    world: World,
    clock: Clock,
    card: str | None,
    message: str,
) -> None:
    person = await world.user()
    cus = await with_card(engine, clock, person, card)
    response = await client.post(
        "/user/payment/credits", json={"amount": "25.00"}, headers=person.headers
    )
    assert response.status_code == 402, response.text
    assert response.json()["error_code"] == "payment_required"
    assert message in response.json()["message"]
    assert await stable(client, person) == "0.00"
    [invoice] = await ok(await client.get("/user/payment/invoices", headers=person.headers))
    assert (invoice["status"], invoice["amount_remaining"], invoice["paid"]) == (
        "open",
        "25.00",
        False,
    )
    # With a good card, paying it now succeeds, once.
    processor = embedded(engine, lambda: clock.now)
    visa = await processor.attach_test_card(cus, VISA)
    await processor.set_default_payment_method(cus, visa.id)
    path = f"/user/payment/invoices/{invoice['id']}/pay"
    paid = await ok(await client.post(path, headers=person.headers))
    assert paid["status"] == "paid" and paid["amount_paid"] == "25.00"
    again = await ok(await client.post(path, headers=person.headers))
    assert again["attempt_count"] == paid["attempt_count"]
    assert await stable(client, person) == "25.00"
    assert await succeeded_cents(engine) == 2500
    await books_clean(engine)


async def test_an_invoice_id_in_capitals_is_paid_as_it_is_read(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    """A UUID in capitals (the pattern the API states allows them) found the invoice to read
    but not to pay: the charge looked the raw id up, and the customer got a 404."""
    person = await world.user()
    cus = await with_card(engine, clock, person, DECLINES)
    refused = await client.post(
        "/user/payment/credits", json={"amount": "25.00"}, headers=person.headers
    )
    assert refused.status_code == 402, refused.text
    [invoice] = await ok(await client.get("/user/payment/invoices", headers=person.headers))
    processor = embedded(engine, lambda: clock.now)
    visa = await processor.attach_test_card(cus, VISA)
    await processor.set_default_payment_method(cus, visa.id)
    path = f"/user/payment/invoices/{invoice['id'].upper()}"
    assert (await ok(await client.get(path, headers=person.headers)))["status"] == "open"
    paid = await ok(await client.post(f"{path}/pay", headers=person.headers))
    assert (paid["id"], paid["status"], paid["amount_paid"]) == (invoice["id"], "paid", "25.00")
    assert await stable(client, person) == "25.00"
    assert await succeeded_cents(engine) == 2500
    await books_clean(engine)


async def test_another_customers_invoice_is_404_everywhere(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    owner, other = await world.user(), await world.user()
    await with_card(engine, clock, owner, VISA)
    invoice = await ok(
        await client.post("/user/payment/credits", json={"amount": "5"}, headers=owner.headers),
        201,
    )
    before = await dump(engine)
    for method, path in (
        ("GET", f"/user/payment/invoices/{invoice['id']}"),
        ("GET", f"/user/payment/invoices/{invoice['id']}/pdf"),
        ("POST", f"/user/payment/invoices/{invoice['id']}/pay"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (path, response.text)
    assert await ok(await client.get("/user/payment/invoices", headers=other.headers)) == []
    # A link signed for one kind or invoice opens nothing else.
    pdf_link = urlsplit(invoice["pdf"])
    tampered = f"/invoices/{invoice['id']}/html?{pdf_link.query}"
    assert (await client.get(tampered)).status_code == 403
    clock.advance(days=8)
    assert (await client.get(relative(invoice["pdf"]))).status_code == 403
    assert await dump(engine) == before


async def test_staff_refunds_once_per_key_within_what_was_paid(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    person, staff = await world.user(), await world.user(staff=True)
    await with_card(engine, clock, person, VISA)
    invoice = await ok(
        await client.post(
            "/user/payment/credits", json={"amount": "20.00"}, headers=person.headers
        ),
        201,
    )
    path = f"/invoices/{invoice['id']}/refund"
    body = {"amount": "5.00", "idempotency_key": "ticket-42"}
    assert (await client.post(path, json=body, headers=person.headers)).status_code == 403
    refunded = await ok(await client.post(path, json=body, headers=staff.headers))
    assert (refunded["amount_refunded"], refunded["refund_status"]) == (
        "5.00",
        "partially_refunded",
    )
    assert refunded["metadata"]["amount_refunded"] == "5.00"
    retried = await ok(await client.post(path, json=body, headers=staff.headers))
    assert retried["amount_refunded"] == "5.00"
    assert await refunded_cents(engine) == 500
    assert await stable(client, person) == "15.00"
    too_much = await client.post(
        path, json={"amount": "15.01", "idempotency_key": "k2"}, headers=staff.headers
    )
    assert too_much.status_code == 400 and "15.00 USD left to refund" in too_much.text
    rest = await ok(
        await client.post(
            path, json={"amount": "15.00", "idempotency_key": "k3"}, headers=staff.headers
        )
    )
    assert (rest["amount_refunded"], rest["refund_status"]) == ("20.00", "refunded")
    assert await stable(client, person) == "0.00"
    detail = await ok(
        await client.get(f"/user/payment/invoices/{invoice['id']}", headers=person.headers)
    )
    assert detail["amount_refunded"] == "20.00"
    await books_clean(engine)


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "25.001"},
        {"amount": "0.99"},
        {"amount": "100000.01"},
        {"amount": -5},
        {"amount": "abc"},
        {},
        {"amount": "5.00", "extra": 1},
    ],
)
async def test_bad_purchases_are_400_and_change_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock, body: object
) -> None:
    person = await world.user()
    await with_card(engine, clock, person, VISA)
    before = await dump(engine)
    response = await client.post("/user/payment/credits", json=body, headers=person.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "bad_request"
    assert await dump(engine) == before


async def test_org_admins_buy_and_list_for_the_org_members_may_not(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    admin, member = await world.user(), await world.user()
    org = await world.org(admin, member)
    processor = embedded(engine, lambda: clock.now)
    await processor_customer(engine, processor, org.customer, clock.now, VISA)
    bought = await ok(
        await client.post("/org/payment/credits", json={"amount": 12}, headers=admin.headers),
        201,
    )
    assert bought["customer_id"] == org.id and bought["total"] == "12.00"
    listed = await ok(await client.get("/org/payment/invoices", headers=admin.headers))
    assert [item["id"] for item in listed] == [bought["id"]]
    for method, path in (
        ("GET", "/org/payment/invoices"),
        ("POST", "/org/payment/credits"),
        ("GET", f"/org/payment/invoices/{bought['id']}"),
    ):
        response = await client.request(
            method, path, headers=member.headers, json={"amount": 1} if method == "POST" else None
        )
        assert response.status_code == 403, (path, response.text)
    # The org's invoice is not the admin's own.
    mine = await client.get(f"/user/payment/invoices/{bought['id']}", headers=admin.headers)
    assert mine.status_code == 404


async def test_listing_pages_newest_first(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    person = await world.user()
    await with_card(engine, clock, person, VISA)
    ids = []
    for amount in ("1.00", "2.00", "3.00"):
        clock.advance(minutes=1)
        made = await client.post(
            "/user/payment/credits", json={"amount": amount}, headers=person.headers
        )
        ids.append((await ok(made, 201))["id"])
    first = await ok(await client.get("/user/payment/invoices?limit=2", headers=person.headers))
    assert [item["id"] for item in first["items"]] == [ids[2], ids[1]]
    second = await ok(
        await client.get(
            f"/user/payment/invoices?limit=2&page_token={first['next_page']}",
            headers=person.headers,
        )
    )
    assert [item["id"] for item in second["items"]] == [ids[0]]
    assert second["next_page"] is None
    numbers = [
        item["number"]
        for item in await ok(await client.get("/user/payment/invoices", headers=person.headers))
    ]
    assert numbers == ["ZP-000003", "ZP-000002", "ZP-000001"]


async def _pdf_text(client: httpx.AsyncClient, person: Person, base: str, invoice_id: str) -> str:
    url = f"{base}/payment/invoices/{invoice_id}/pdf"
    pdf = await client.get(url, headers=person.headers)
    assert pdf.status_code == 200, pdf.text
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)


async def test_an_invoice_without_billing_information_is_billed_to_the_accounts_email(
    client: httpx.AsyncClient, engine: AsyncEngine, world: World, clock: Clock
) -> None:
    """Billing's invoices (period close, upgrades) name no email: the PDF and page show the
    user's email, an org's billing email, or its admin's when the org has none."""
    person, admin, other_admin = await world.user(), await world.user(), await world.user()
    org = await world.org(admin, name="Acme")
    no_email = await world.org(other_admin, name="Nomail")
    async with transaction(engine) as conn:
        await accounts.update_org(
            conn,
            org_id=org.id,
            changes={"billing_email": "Billing@Acme.example"},
            actor=admin.user,
            now=clock.now,
        )
        # The API never stores an empty billing email; a row written some other way may.
        await conn.execute(update(orgs).where(orgs.c.id == no_email.id).values(billing_email=""))
    cases = [
        (person.user.customer, person, "/user", person.email),
        (Customer("org", org.id), admin, "/org", "billing@acme.example"),
        (Customer("org", no_email.id), other_admin, "/org", other_admin.email),
    ]
    for customer, reader, base, email in cases:
        async with transaction(engine) as conn:
            invoice = await issue_invoice(
                conn,
                customer=customer,
                lines=[usage_line(period="2026-01-15 to 2026-02-15", amount_micros=4_250_000)],
                description="zoopay, period ending 2026-02-15",
                tax_rates={},
                prefix="ZP",
                now=clock.now,
            )
        assert invoice.customer_email is None
        text = await _pdf_text(client, reader, base, invoice.id)
        bill_to = text.split("Bill to", 1)[1].split("Description", 1)[0]
        assert email in bill_to and customer.id not in bill_to, (email, text)
        detail = await ok(
            await client.get(f"{base}/payment/invoices/{invoice.id}", headers=reader.headers)
        )
        page = await client.get(relative(detail["url"]))
        assert email in page.text.split("Bill to", 1)[1], page.text
    await books_clean(engine)
