"""Invoices on a live server, read with kittycad 1.2.0 (an array of Invoice) and 1.8.0 (paged
InvoiceResultsPage, with the refund fields): credits bought with a card, one refunded in part;
the PDF and page links open with no token."""

import asyncio
import io
from datetime import UTC, datetime

import httpx
from pypdf import PdfReader

from tests.e2e.conftest import LiveServer, People
from tests.e2e.sdk_support import LIST_INVOICES, run_latest
from tests.support.processor import VISA, processor_customer
from zoopay.db.engine import create_engine
from zoopay.ledger.service import Customer
from zoopay.processors.embedded import EmbeddedProcessor


def utc_now() -> datetime:
    return datetime.now(UTC)


def give_card(database_url: str, user_id: str) -> None:
    async def run() -> None:
        engine = create_engine(database_url)
        try:
            processor = EmbeddedProcessor(engine, utc_now)
            await processor_customer(engine, processor, Customer("user", user_id), utc_now(), VISA)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_kittycad_lists_invoices_and_the_links_open(
    people: People, server: LiveServer, http: httpx.Client, database_url: str
) -> None:
    buyer, staff = people.user(), people.user(staff=True)
    give_card(database_url, buyer.id)
    made = []
    for amount in ("25.00", "7.50"):
        bought = http.post("/user/payment/credits", json={"amount": amount}, headers=buyer.headers)
        assert bought.status_code == 201, bought.text
        made.append(bought.json())
    refund = http.post(
        f"/invoices/{made[1]['id']}/refund",
        json={"amount": "2.50", "idempotency_key": "e2e"},
        headers=staff.headers,
    )
    assert refund.status_code == 200, refund.text

    invoices = buyer.sdk.payments.list_invoices_for_user()
    assert [(i.number, i.total, i.amount_paid, i.paid) for i in invoices] == [
        (made[1]["number"], 7.5, 7.5, True),
        (made[0]["number"], 25.0, 25.0, True),
    ]
    assert invoices[0].metadata == {
        "amount_refunded": "2.50",
        "refund_status": "partially_refunded",
    }
    assert [line.amount for line in invoices[1].lines or []] == [25.0]
    balance = buyer.sdk.payments.get_payment_balance_for_user()
    assert balance.stable_api_credits_remaining_monetary_value == 30.0  # 25 + 7.50 - 2.50

    assert invoices[1].pdf is not None and invoices[1].url is not None
    pdf = httpx.get(invoices[1].pdf, timeout=30)
    assert pdf.status_code == 200
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert made[0]["number"] in text and "25.00 USD" in text
    page = httpx.get(invoices[1].url, timeout=30)
    assert page.status_code == 200 and made[0]["number"] in page.text

    assert run_latest(server, LIST_INVOICES, buyer.token) == [
        {
            "number": made[1]["number"],
            "total": 7.5,
            "amount_paid": 7.5,
            "amount_refunded": 2.5,
            "refund_status": "partially_refunded",
            "status": "paid",
            "lines": [7.5],
        },
        {
            "number": made[0]["number"],
            "total": 25.0,
            "amount_paid": 25.0,
            "amount_refunded": 0.0,
            "refund_status": None,
            "status": "paid",
            "lines": [25.0],
        },
    ]
