"""The console's invoices: the list with status, the PDF, paying an open one now, buying
credits; for staff, refunds. The API's invoicing services and rules (a user's own; an org's
for its admins; refunds for staff)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from zoopay.accounts.service import MAX_EMAIL
from zoopay.console.routes import (
    AccountKind,
    Kind,
    account_of,
    engine_of,
    require_admin,
    staff_customer_of,
    staff_viewer,
    user_of,
)
from zoopay.console.web import (
    ConsoleRoute,
    Viewer,
    checked_form,
    now_of,
    redirect,
    render,
    viewer,
)
from zoopay.db.engine import reading
from zoopay.errors import BadRequest
from zoopay.invoicing.routes import _buy, _own, _pay, _pdf_response
from zoopay.invoicing.schemas import BuyCredits
from zoopay.invoicing.service import (
    CHARGEABLE,
    InvoiceStatus,
    get_invoice,
    list_invoices,
    refund_invoice,
)
from zoopay.ledger.service import Customer
from zoopay.money import MICROS_PER_DOLLAR, InvalidAmount, parse_dollars, to_micros
from zoopay.processors.base import PaymentProcessor

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)
INVOICES_SHOWN = 100
MICROS_PER_CENT = MICROS_PER_DOLLAR // 100
InvoiceId = Annotated[str, Path(max_length=64)]


def _processor(request: Request) -> PaymentProcessor:
    processor: PaymentProcessor = request.app.state.processor
    return processor


async def _invoicing_customer(request: Request, who: Viewer, kind: AccountKind) -> Customer:
    account = await account_of(request, who, kind)
    if kind == "org":
        await require_admin(account)  # /org/payment/invoices* is for org admins
    return account.customer


@router.get("/{kind}/invoices")
async def invoices_page(request: Request, kind: Kind) -> Response:
    who = await viewer(request)
    customer = await _invoicing_customer(request, who, kind)
    async with reading(engine_of(request)) as conn:
        invoices = await list_invoices(conn, customer=customer, limit=INVOICES_SHOWN)
    return render(
        request,
        who,
        "invoices.html",
        account=await account_of(request, who, kind),
        invoices=invoices,
        open_status=InvoiceStatus.OPEN,
        # An uncollectible invoice is still paid this way: the delinquent customer's way out.
        payable_statuses=CHARGEABLE,
    )


@router.get("/{kind}/invoices/{invoice_id}/pdf")
async def invoice_pdf(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    who = await viewer(request)
    customer = await _invoicing_customer(request, who, kind)
    engine = engine_of(request)
    return await _pdf_response(engine, request, await _own(engine, customer, invoice_id))


@router.post("/{kind}/invoices/{invoice_id}/pay")
async def invoice_pay(request: Request, kind: Kind, invoice_id: InvoiceId) -> Response:
    who = await viewer(request)
    await checked_form(request, who)
    customer = await _invoicing_customer(request, who, kind)
    engine = engine_of(request)
    await _pay(engine, _processor(request), request, customer, invoice_id, now_of(request))
    return redirect(f"/console/{kind}/invoices")


@router.post("/{kind}/credits")
async def credits_buy(request: Request, kind: Kind) -> Response:
    """Buy stable credits: an invoice issued and charged at once, as POST /user/payment/credits."""
    who = await viewer(request)
    form = await checked_form(request, who)
    customer = await _invoicing_customer(request, who, kind)
    try:
        amount = parse_dollars(form.get("amount", "").strip())
    except InvalidAmount as exc:
        raise BadRequest(f"amount: {exc}") from None
    engine = engine_of(request)
    body = BuyCredits(amount=amount)
    await _buy(engine, _processor(request), request, customer, body, now_of(request))
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
    who = await staff_viewer(request)
    form = await checked_form(request, who)
    customer = await staff_customer_of(request, kind, customer_id)
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
        _processor(request),
        invoice_id=invoice_id,
        amount_micros=micros,
        idempotency_key=key,
        actor=user_of(who).id,
        now=now_of(request),
    )
    return redirect(f"/console/staff/{kind}/{customer.id}")
