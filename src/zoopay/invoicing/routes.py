"""Invoices over HTTP: listings (Zoo's), one invoice, its PDF and page, paying it, buying
credits (extensions) and refunds (staff)."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.api.deps import CurrentUser, Engine, IdInPath, Now, OrgAdmin, StaffUser
from zoopay.api.openapi import errors
from zoopay.api.pagination import Limit, PageToken, decode_page_token, encode_page_token
from zoopay.api.routing import json_router
from zoopay.config import Settings
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest, quoted
from zoopay.invoicing import links
from zoopay.invoicing.documents import Issuer, account_email, render_html, render_pdf
from zoopay.invoicing.schemas import (
    BuyCredits,
    Invoice,
    InvoiceDetail,
    InvoiceResultsPage,
    RefundInvoice,
)
from zoopay.invoicing.service import (
    MICROS_PER_CENT,
    charge_invoice,
    credits_line,
    get_invoice,
    issue_invoice,
    list_invoices,
    refund_invoice,
)
from zoopay.invoicing.service import Invoice as InvoiceRecord
from zoopay.ledger.service import Customer
from zoopay.money import to_micros
from zoopay.payments.service import (
    customer_contact,
    ensure_processor_customer,
    find_payment_customer,
)
from zoopay.processors.base import PaymentProcessor

router = json_router(tags=["payments"])
links_router = json_router(tags=["invoices"])

MIN_CREDITS = Decimal("1.00")
MAX_CREDITS = Decimal("100000.00")
LEGACY_LIST_LIMIT = 100


def _processor(request: Request) -> PaymentProcessor:
    processor: PaymentProcessor = request.app.state.processor
    return processor


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _base_url(request: Request) -> str:
    configured = _settings(request).public_url
    return (configured or str(request.base_url)).rstrip("/")


def _issuer(request: Request) -> Issuer:
    settings = _settings(request)
    return Issuer(settings.invoice_issuer, settings.invoice_issuer_address)


async def _link_key(engine: AsyncEngine, now: datetime) -> bytes:
    """The key that signs links: read without a write lock, made (a write) on first use."""
    async with reading(engine) as conn:
        key = await links.existing_link_key(conn)
    if key is None:
        async with transaction(engine) as conn:
            key = await links.link_key(conn, now=now)
    return key


def _links(key: bytes, request: Request, invoice: InvoiceRecord, now: datetime) -> tuple[str, str]:
    base = _base_url(request)
    return (
        base + links.signed_path(key, invoice.id, "pdf", now=now),
        base + links.signed_path(key, invoice.id, "html", now=now),
    )


async def _detail(
    engine: AsyncEngine, request: Request, invoice: InvoiceRecord, now: datetime
) -> InvoiceDetail:
    pdf, url = _links(await _link_key(engine, now), request, invoice, now)
    return InvoiceDetail.of(invoice, pdf=pdf, url=url)


# ------------------------------------------------------------------------------- listings

InvoiceList = list[Invoice] | InvoiceResultsPage

_LIST_DOC = (
    "Newest first. Without `limit` and `page_token`: a JSON array of the newest 100 (kittycad"
    " 1.2.0's shape). With either: an InvoiceResultsPage (kittycad 1.8.0's shape, with refunds)."
)


async def _list(
    engine: AsyncEngine,
    request: Request,
    customer: Customer,
    limit: int | None,
    page_token: str | None,
    now: datetime,
) -> InvoiceList:
    paged = limit is not None or page_token is not None
    size = limit or LEGACY_LIST_LIMIT
    before = decode_page_token(page_token) if page_token else None
    async with reading(engine) as conn:
        rows = await list_invoices(conn, customer=customer, limit=size + 1, before=before)
    shown = rows[:size]
    key = await _link_key(engine, now)
    made = [(row, _links(key, request, row, now)) for row in shown]
    if not paged:
        return [Invoice.of(row, pdf=pdf, url=url) for row, (pdf, url) in made]
    next_page = None
    if len(rows) > size:
        last = shown[-1]
        next_page = encode_page_token(last.created_at, last.id)
    return InvoiceResultsPage(
        items=[InvoiceDetail.of(row, pdf=pdf, url=url) for row, (pdf, url) in made],
        next_page=next_page,
    )


OptionalLimit = Annotated[Limit | None, Query()]


@router.get("/user/payment/invoices", response_model=InvoiceList, description=_LIST_DOC)
async def list_invoices_for_user(
    user: CurrentUser,
    engine: Engine,
    request: Request,
    now: Now,
    limit: OptionalLimit = None,
    page_token: PageToken = None,
) -> InvoiceList:
    """The caller's invoices."""
    return await _list(engine, request, user.customer, limit, page_token, now)


@router.get("/org/payment/invoices", response_model=InvoiceList, description=_LIST_DOC)
async def list_invoices_for_org(
    admin: OrgAdmin,
    engine: Engine,
    request: Request,
    now: Now,
    limit: OptionalLimit = None,
    page_token: PageToken = None,
) -> InvoiceList:
    """Org admin: the org's invoices."""
    return await _list(engine, request, admin.org, limit, page_token, now)


# ---------------------------------------------------------------------------- one invoice


def _checked_id(invoice_id: str) -> str:
    try:
        return str(uuid.UUID(invoice_id))
    except ValueError:
        raise BadRequest(f"invoice id {quoted(invoice_id)} is not a UUID") from None


async def _own(engine: AsyncEngine, customer: Customer, invoice_id: str) -> InvoiceRecord:
    invoice_id = _checked_id(invoice_id)
    async with reading(engine) as conn:
        return await get_invoice(conn, invoice_id=invoice_id, customer=customer)


@router.get("/user/payment/invoices/{id}", response_model=InvoiceDetail, responses=errors(404))
async def get_invoice_for_user(
    user: CurrentUser, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """One of the caller's invoices, with its refunds (extension)."""
    return await _detail(engine, request, await _own(engine, user.customer, id), now)


@router.get("/org/payment/invoices/{id}", response_model=InvoiceDetail, responses=errors(404))
async def get_invoice_for_org(
    admin: OrgAdmin, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """Org admin: one of the org's invoices, with its refunds (extension)."""
    return await _detail(engine, request, await _own(engine, admin.org, id), now)


_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
}
_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}}
}


async def _account_email(engine: AsyncEngine, invoice: InvoiceRecord) -> str | None:
    """Who the invoice is billed to when it names no email: the account's."""
    if invoice.customer_email:
        return None
    async with reading(engine) as conn:
        return await account_email(conn, customer=invoice.customer)


async def _pdf_response(engine: AsyncEngine, request: Request, invoice: InvoiceRecord) -> Response:
    name = f"invoice-{invoice.number or invoice.id}.pdf"
    return Response(
        render_pdf(invoice, _issuer(request), await _account_email(engine, invoice)),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private"},
    )


async def _html_response(
    engine: AsyncEngine, request: Request, invoice: InvoiceRecord, pdf_url: str
) -> HTMLResponse:
    page = render_html(invoice, _issuer(request), pdf_url, await _account_email(engine, invoice))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


_PAGE_HEADERS = {
    "Cache-Control": "private",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@router.get(
    "/user/payment/invoices/{id}/pdf",
    response_class=Response,
    responses={**_PDF, **errors(404)},
)
async def get_invoice_pdf_for_user(
    user: CurrentUser, engine: Engine, request: Request, id: IdInPath
) -> Response:
    """The invoice as a PDF (extension)."""
    return await _pdf_response(engine, request, await _own(engine, user.customer, id))


@router.get(
    "/org/payment/invoices/{id}/pdf",
    response_class=Response,
    responses={**_PDF, **errors(404)},
)
async def get_invoice_pdf_for_org(
    admin: OrgAdmin, engine: Engine, request: Request, id: IdInPath
) -> Response:
    """Org admin: the invoice as a PDF (extension)."""
    return await _pdf_response(engine, request, await _own(engine, admin.org, id))


Expires = Annotated[int, Query(ge=0, le=2**40, description="The link's expiry (Unix seconds)")]
Signature = Annotated[str, Query(pattern="^[0-9a-f]{64}$", description="The link's signature")]


async def _signed(
    engine: AsyncEngine, invoice_id: str, kind: str, expires: int, signature: str, now: datetime
) -> InvoiceRecord:
    invoice_id = _checked_id(invoice_id)
    key = await _link_key(engine, now)
    links.check_signature(key, invoice_id, kind, expires=expires, signature=signature, now=now)
    async with reading(engine) as conn:
        return await get_invoice(conn, invoice_id=invoice_id)


@links_router.get(
    "/invoices/{id}/pdf", response_class=Response, responses={**_PDF, **errors(403, 404)}
)
async def get_invoice_pdf_by_link(
    engine: Engine,
    request: Request,
    now: Now,
    id: IdInPath,
    expires: Expires,
    signature: Signature,
) -> Response:
    """An invoice's PDF from its signed link (an invoice's `pdf`): no token needed."""
    invoice = await _signed(engine, id, "pdf", expires, signature, now)
    return await _pdf_response(engine, request, invoice)


@links_router.get(
    "/invoices/{id}/html", response_class=HTMLResponse, responses={**_HTML, **errors(403, 404)}
)
async def get_invoice_page_by_link(
    engine: Engine,
    request: Request,
    now: Now,
    id: IdInPath,
    expires: Expires,
    signature: Signature,
) -> HTMLResponse:
    """An invoice's page from its signed link (an invoice's `url`): no token needed."""
    invoice = await _signed(engine, id, "html", expires, signature, now)
    pdf, _url = _links(await _link_key(engine, now), request, invoice, now)
    return await _html_response(engine, request, invoice, pdf)


# --------------------------------------------------------------------------------- paying


async def _pay(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    request: Request,
    customer: Customer,
    invoice_id: str,
    now: datetime,
) -> InvoiceDetail:
    await _own(engine, customer, invoice_id)
    processor_customer = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    outcome = await charge_invoice(
        engine,
        processor,
        invoice_id=invoice_id,
        processor_customer_id=processor_customer,
        now=now,
    )
    return await _detail(engine, request, outcome.raise_unless_paid(), now)


@router.post(
    "/user/payment/invoices/{id}/pay",
    response_model=InvoiceDetail,
    responses=errors(402, 404, 409),
)
async def pay_invoice_for_user(
    user: CurrentUser, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """Charge an open invoice now with the default payment method (extension); a paid one is
    answered as it is. 402 with what to do when the charge fails."""
    return await _pay(engine, _processor(request), request, user.customer, id, now)


@router.post(
    "/org/payment/invoices/{id}/pay",
    response_model=InvoiceDetail,
    responses=errors(402, 404, 409),
)
async def pay_invoice_for_org(
    admin: OrgAdmin, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """Org admin: charge an open invoice of the org now (extension)."""
    return await _pay(engine, _processor(request), request, admin.org, id, now)


def _credits_micros(amount: Decimal) -> int:
    if amount != amount.quantize(Decimal("0.01")):
        raise BadRequest("credits are bought in whole cents, e.g. 25.00")
    if not MIN_CREDITS <= amount <= MAX_CREDITS:
        raise BadRequest(f"credits are bought from {MIN_CREDITS} to {MAX_CREDITS} USD at a time")
    return to_micros(amount)


async def _buy(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    request: Request,
    customer: Customer,
    body: BuyCredits,
    now: datetime,
) -> InvoiceDetail:
    micros = _credits_micros(body.amount)
    processor_customer = await ensure_processor_customer(
        engine, processor=processor, customer=customer, now=now
    )
    settings = _settings(request)
    async with transaction(engine) as conn:
        email, name = await customer_contact(conn, customer=customer)
        found = await find_payment_customer(conn, customer=customer)
        address = found.details.address if found else None
        invoice = await issue_invoice(
            conn,
            customer=customer,
            lines=[credits_line(amount_micros=micros)],
            description="Prepaid API credits",
            tax_rates=settings.tax_rates,
            prefix=settings.invoice_prefix,
            now=now,
            country=address.country if address else None,
            customer_email=email,
            customer_name=(found.details.name if found else None) or name,
        )
    outcome = await charge_invoice(
        engine,
        processor,
        invoice_id=invoice.id,
        processor_customer_id=processor_customer,
        now=now,
    )
    return await _detail(engine, request, outcome.raise_unless_paid(), now)


@router.post(
    "/user/payment/credits",
    response_model=InvoiceDetail,
    status_code=201,
    responses=errors(402),
)
async def buy_credits_for_user(
    user: CurrentUser, engine: Engine, request: Request, now: Now, body: BuyCredits
) -> InvoiceDetail:
    """Buy stable API credits (extension): an invoice is issued and charged at once; the
    stable bucket grows by the amount when, and only when, it is paid. 402 with what to do when
    the charge fails: nothing is credited and the invoice stays open."""
    return await _buy(engine, _processor(request), request, user.customer, body, now)


@router.post(
    "/org/payment/credits",
    response_model=InvoiceDetail,
    status_code=201,
    responses=errors(402),
)
async def buy_credits_for_org(
    admin: OrgAdmin, engine: Engine, request: Request, now: Now, body: BuyCredits
) -> InvoiceDetail:
    """Org admin: buy stable API credits for the org (extension)."""
    return await _buy(engine, _processor(request), request, admin.org, body, now)


# -------------------------------------------------------------------------------- refunds


@router.post(
    "/invoices/{id}/refund",
    response_model=InvoiceDetail,
    responses=errors(404, 409),
)
async def refund_invoice_as_staff(
    staff: StaffUser,
    engine: Engine,
    request: Request,
    now: Now,
    id: IdInPath,
    body: RefundInvoice,
) -> InvoiceDetail:
    """Staff: refund part or all of a paid invoice through the processor (extension). The same
    `idempotency_key` refunds once. 400 beyond what is left to refund; 409 when the credits it
    would take back are spent."""
    micros = to_micros(body.amount)
    if micros % MICROS_PER_CENT:
        raise BadRequest("a refund is in whole cents, e.g. 5.00")
    id = _checked_id(id)
    async with reading(engine) as conn:
        await get_invoice(conn, invoice_id=id)
    invoice = await refund_invoice(
        engine,
        _processor(request),
        invoice_id=id,
        amount_micros=micros,
        idempotency_key=body.idempotency_key,
        actor=staff.id,
        now=now,
    )
    return await _detail(engine, request, invoice, now)
