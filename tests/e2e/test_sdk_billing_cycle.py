"""Billing on a live server on the embedded processor, read with kittycad 1.2.0 and 1.8.0: a
period close with usage, an early (threshold) invoice, dunning to uncollectible and back to
paid, a refund; `zoopay ledger verify` clean after each step.

The periods are closed with `zoopay billing run --at ... --allow-future` (the server's clock is
the real one): the first ends a month after the customer was made. Cards are added as a
customer adds them (a setup intent confirmed over HTTP); what kittycad has no method for (paying
an invoice, reporting calls, refunds: extensions) is plain HTTP.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from kittycad.models import BillingInfo, ZooProductSubscriptionsUserRequest

from tests.e2e.conftest import Account, LiveServer, People, Zoopay
from tests.e2e.metering_support import Call, bearer, micros, service_token
from tests.e2e.sdk_support import LIST_INVOICES, confirm, run_latest
from tests.support.http import add_card

CLEAN = {"ok": True, "problems": []}


def bill(zoopay: Zoopay, days: float) -> dict[str, Any]:
    """`zoopay billing run` as of `days` from now, a rehearsal; the books verified after it."""
    at = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")
    summary = zoopay.json("billing", "run", "--at", at, "--allow-future")
    assert zoopay.json("ledger", "verify") == CLEAN
    return summary


def upgrade_to_pro(http: httpx.Client, account: Account) -> None:
    add_card(http, account.headers)
    pro = account.sdk.payments.create_user_subscription(
        body=ZooProductSubscriptionsUserRequest(modeling_app="pro")
    )
    assert pro.modeling_app.name == "pro"


def report_call(http: httpx.Client, service: str, account: Account, price: str) -> None:
    call = Call(account.id, datetime.now(UTC), timedelta(seconds=3), micros(price))
    answer = http.post("/api-calls", headers=bearer(service), json=call.fields())
    assert answer.status_code == 201, answer.text


def authorize(http: httpx.Client, service: str, account: Account) -> int:
    body = {"user_id": account.id, "endpoint": "/file/conversion"}
    return http.post("/api-calls/authorize", headers=bearer(service), json=body).status_code


def listed(account: Account) -> list[tuple[str | None, str, float, list[float]]]:
    """The invoices as kittycad 1.2.0 reads them, newest first."""
    return [
        (i.number, str(i.status), i.total or 0.0, [line.amount for line in i.lines or []])
        for i in account.sdk.payments.list_invoices_for_user()
    ]


def test_a_period_close_bills_fee_and_usage_then_usage_past_the_threshold_is_billed_early(
    people: People, zoopay: Zoopay, http: httpx.Client, server: LiveServer
) -> None:
    user = people.user()
    service = service_token(zoopay, "product")
    upgrade_to_pro(http, user)
    report_call(http, service, user, "104.25")  # Pro's 100.00 of credits, and 4.25 beyond
    assert user.sdk.payments.get_payment_balance_for_user().total_due == 4.25
    assert zoopay.json("ledger", "verify") == CLEAN

    close = bill(zoopay, 32)
    assert (close["closed"], close["invoiced"], close["paid"], close["early"]) == (1, 1, 1, 0)
    # The usage of the period that ended is paid: total_due is settled.
    balance = user.sdk.payments.get_payment_balance_for_user()
    assert (balance.total_due, balance.monthly_api_credits_remaining_monetary_value) == (0, 100)

    report_call(http, service, user, "220.00")  # this period's 100.00, and 120.00 beyond
    assert user.sdk.payments.get_payment_balance_for_user().total_due == 120
    early = bill(zoopay, 33)  # unpaid usage reached the default threshold, 100.00
    assert (early["closed"], early["early"], early["invoiced"], early["paid"]) == (0, 1, 1, 1)
    assert user.sdk.payments.get_payment_balance_for_user().total_due == 0
    assert bill(zoopay, 33.5)["early"] == 0  # billed once

    assert listed(user) == [
        ("ZP-000003", "paid", 120.0, [120.0]),
        ("ZP-000002", "paid", 53.25, [49.0, 4.25]),  # next month's fee, the usage that ended
        ("ZP-000001", "paid", 48.99, [48.99]),  # the upgrade, prorated
    ]
    newest = run_latest(server, LIST_INVOICES, user.token)
    assert [(i["number"], i["status"], i["amount_paid"], i["lines"]) for i in newest] == [
        ("ZP-000003", "paid", 120.0, [120.0]),
        ("ZP-000002", "paid", 53.25, [49.0, 4.25]),
        ("ZP-000001", "paid", 48.99, [48.99]),
    ]


def test_dunning_to_uncollectible_then_paid_with_a_new_default_card_then_refunded(
    people: People, zoopay: Zoopay, http: httpx.Client, server: LiveServer
) -> None:
    user, staff = people.user(), people.user(staff=True)
    service = service_token(zoopay, "product")
    upgrade_to_pro(http, user)
    [visa] = http.get("/user/payment/methods", headers=user.headers).json()["items"]
    user.sdk.payments.create_payment_information_for_user(body=BillingInfo(name="Ada", phone=""))
    intent = http.post("/user/payment/intent", headers=user.headers).json()
    failing = confirm(http, intent["client_secret"], "pm_card_chargeCustomerFail")
    default = http.post(f"/user/payment/methods/{failing['id']}/default", headers=user.headers)
    assert default.status_code == 204, default.text

    first = bill(zoopay, 32)
    assert (first["invoiced"], first["failed"], first["uncollectible"]) == (1, 1, 0)
    # Retried 1, 3, 5 and 7 days after the first failure; given up on after the last.
    for day, uncollectible in ((33.1, 0), (35.1, 0), (37.1, 0), (39.1, 1)):
        run = bill(zoopay, day)
        assert (run["retried"], run["failed"], run["uncollectible"]) == (1, 1, uncollectible)
    [invoice, _upgrade] = listed(user)
    assert invoice == ("ZP-000002", "uncollectible", 49.0, [49.0])
    assert user.sdk.payments.get_payment_information_for_user().delinquent is True
    assert authorize(http, service, user) == 402

    unpaid = user.sdk.payments.list_invoices_for_user()[0].id
    pay = f"/user/payment/invoices/{unpaid}/pay"
    declined = http.post(pay, headers=user.headers)
    assert declined.status_code == 402 and "uncollectible" in declined.json()["message"]
    assert http.post(f"/user/payment/methods/{visa['id']}/default", headers=user.headers).is_success
    paid = http.post(pay, headers=user.headers)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["amount_paid"]) == ("paid", "49.00")
    assert user.sdk.payments.get_payment_information_for_user().delinquent is False
    assert authorize(http, service, user) == 200
    assert zoopay.json("ledger", "verify") == CLEAN
    assert bill(zoopay, 40)["retried"] == 0  # nothing left to dun

    refund = http.post(
        f"/invoices/{unpaid}/refund",
        json={"amount": "10.00", "idempotency_key": "e2e-dunning"},
        headers=staff.headers,
    )
    assert refund.status_code == 200, refund.text
    assert zoopay.json("ledger", "verify") == CLEAN
    assert listed(user)[0] == ("ZP-000002", "paid", 49.0, [49.0])
    newest = run_latest(server, LIST_INVOICES, user.token)
    assert newest[0] == {
        "number": "ZP-000002",
        "total": 49.0,
        "amount_paid": 49.0,
        "amount_refunded": 10.0,
        "refund_status": "partially_refunded",
        "status": "paid",
        "lines": [49.0],
    }
