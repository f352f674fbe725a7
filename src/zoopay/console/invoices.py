"""The console's invoices: the list with status, the PDF, paying an open one now, buying
credits; for staff, refunds. The API's invoicing services and rules (a user's own; an org's
for its admins; refunds for staff)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from zoopay.accounts.service import MAX_EMAIL
from zoopay.api.deps import engine_of, processor_of, settings_of
from zoopay.console.routes import (
    Kind,
    paying_account,
    paying_customer,
    paying_customer_form,
    staff_form,
)
from zoopay.console.web import ConsoleRoute, now_of, redirect, render, viewer
from zoopay.db.engine import reading
from zoopay.errors import BadRequest
from zoopay.invoicing.actions import (
    authenticate_payment,
    buy_credits,
    issuer_of,
    own_invoice,
    pay_invoice_now,
    pdf_response,
    waiting_payment,
)
from zoopay.invoicing.service import (
    CHARGEABLE,
    InvoiceStatus,
    get_invoice,
    list_invoices,
    refund_invoice,
    waiting_for_customer,
)
from zoopay.money import MICROS_PER_DOLLAR, InvalidAmount, parse_dollars, to_micros
from zoopay.processors.embedded import EmbeddedProcessor

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)
INVOICES_SHOWN = 100
MICROS_PER_CENT = MICROS_PER_DOLLAR // 100
InvoiceId = Annotated[str, Path(max_length=64)]


@router.get("/{kind}/invoices")
async def invoices_page(request: Request, kind: Kind) -> Response:
    who = await viewer(request)
    account = await paying_account(request, who, kind)
    async with reading(engine_of(request)) as conn:
        invoices = await list_invoices(conn, customer=account.customer, limit=INVOICES_SHOWN)
        waiting = await waiting_for_customer(conn, invoice_ids=[i.id for i in invoices])
    return render(
        request,
        who,
        "invoices.html",
        account=account,
        invoices=invoices,
        open_status=InvoiceStatus.OPEN,
        # An uncollectible invoice is still paid this way: the delinquent customer's way out.
        payable_statuses=CHARGEABLE,
        # Charges waiting for the customer's bank, which zoopay's page plays on embedded.
        waiting=waiting if isinstance(processor_of(request), EmbeddedProcessor) else {},
    )


@router.get("/{kind}/invoices/{invoice_id}/pdf")
async def invoice_pdf(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    who = await viewer(request)
    customer = await paying_customer(request, who, kind)
    invoice = await own_invoice(engine_of(request), customer=customer, invoice_id=invoice_id)
    return await pdf_response(engine_of(request), invoice, issuer_of(settings_of(request)))


@router.post("/{kind}/invoices/{invoice_id}/pay")
async def invoice_pay(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    _form, customer = await paying_customer_form(request, kind)
    await pay_invoice_now(
        engine_of(request),
        processor=processor_of(request),
        customer=customer,
        invoice_id=invoice_id,
        now=now_of(request),
    )
    return redirect(f"/console/{kind}/invoices")


@router.get("/{kind}/invoices/{invoice_id}/authenticate")
async def authentication_page(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    """The embedded processor's stand-in for the customer's bank (3-D Secure): the payment
    that waits, and the choice to approve or refuse it."""
    who = await viewer(request)
    account = await paying_account(request, who, kind)
    invoice, attempt = await waiting_payment(
        engine_of(request),
        processor=processor_of(request),
        customer=account.customer,
        invoice_id=invoice_id,
    )
    return render(
        request,
        who,
        "authenticate.html",
        account=account,
        invoice=invoice,
        amount_micros=attempt.amount_cents * MICROS_PER_CENT,
    )


@router.post("/{kind}/invoices/{invoice_id}/authenticate")
async def authenticate(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    form, customer = await paying_customer_form(request, kind)
    answer = form.get("answer", "")
    if answer not in ("approve", "refuse"):
        raise BadRequest("answer: approve or refuse")
    await authenticate_payment(
        engine_of(request),
        processor=processor_of(request),
        customer=customer,
        invoice_id=invoice_id,
        approved=answer == "approve",
        now=now_of(request),
    )
    return redirect(f"/console/{kind}/invoices")


@router.post("/{kind}/credits")
async def credits_buy(request: Request, kind: Kind) -> Response:
    """Buy stable credits: an invoice issued and charged at once, as POST /user/payment/credits."""
    form, customer = await paying_customer_form(request, kind)
    try:
        amount = parse_dollars(form.get("amount", "").strip())
    except InvalidAmount as exc:
        raise BadRequest(f"amount: {exc}") from None
    settings = settings_of(request)
    await buy_credits(
        engine_of(request),
        processor=processor_of(request),
        customer=customer,
        amount=amount,
        tax_rates=settings.tax_rates,
        prefix=settings.invoice_prefix,
        now=now_of(request),
    )
    return redirect(f"/console/{kind}/invoices")


@router.post("/staff/{kind}/{customer_id}/invoices/{invoice_id}/refund")
async def invoice_refund(
    request: Request,
    kind: Kind,
    customer_id: Annotated[str, Path(max_length=MAX_EMAIL)],
    invoice_id: InvoiceId,
) -> Response:
    """Staff: refund part or all of a paid invoice, as POST /invoices/{id}/refund; the form's
    key (made when the page was drawn) refunds once however often it is sent."""
    staff, form, customer = await staff_form(request, kind, customer_id)
    key = form.get("idempotency_key", "")
    if not key or len(key) > 64:
        raise BadRequest("the form is stale: reload the page")
    try:
        micros = to_micros(parse_dollars(form.get("amount", "").strip()))
    except InvalidAmount as exc:
        raise BadRequest(f"amount: {exc}") from None
    if micros % MICROS_PER_CENT:
        raise BadRequest("a refund is in whole cents, e.g. 5.00")
    engine = engine_of(request)
    async with reading(engine) as conn:
        await get_invoice(conn, invoice_id=invoice_id, customer=customer)
    await refund_invoice(
        engine,
        processor_of(request),
        invoice_id=invoice_id,
        amount_micros=micros,
        idempotency_key=key,
        actor=staff.id,
        now=now_of(request),
    )
    return redirect(f"/console/staff/{kind}/{customer.id}")
