"""Invoices over HTTP: listings (Zoo's), one invoice, its PDF and page, paying it, buying
credits (extensions) and refunds (staff)."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.api.deps import Engine, IdInPath, Now, StaffUser, processor_of, settings_of
from zoopay.api.openapi import errors
from zoopay.api.pagination import Limit, PageToken, decode_page_token, encode_page_token
from zoopay.api.routing import Endpoint, for_user_and_org, json_router
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest
from zoopay.invoicing import links
from zoopay.invoicing.actions import (
    billed_email,
    buy_credits,
    checked_invoice_id,
    issuer_of,
    own_invoice,
    pay_invoice_now,
    pdf_response,
)
from zoopay.invoicing.documents import Issuer, render_html
from zoopay.invoicing.schemas import (
    BuyCredits,
    Invoice,
    InvoiceDetail,
    InvoiceResultsPage,
    RefundInvoice,
)
from zoopay.invoicing.service import (
    MICROS_PER_CENT,
    get_invoice,
    list_invoices,
    refund_invoice,
)
from zoopay.invoicing.service import Invoice as InvoiceRecord
from zoopay.ledger.service import Customer
from zoopay.money import to_micros

router = json_router(tags=["payments"])
links_router = json_router(tags=["invoices"])


def _for_both(route: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    return for_user_and_org(router, route, **options)


LEGACY_LIST_LIMIT = 100


def _base_url(request: Request) -> str:
    configured = settings_of(request).public_url
    return (configured or str(request.base_url)).rstrip("/")


def _issuer(request: Request) -> Issuer:
    return issuer_of(settings_of(request))


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


@_for_both("GET /{who}/payment/invoices", response_model=InvoiceList, description=_LIST_DOC)
async def list_invoices_for_who(
    customer: Customer,
    engine: Engine,
    request: Request,
    now: Now,
    limit: OptionalLimit = None,
    page_token: PageToken = None,
) -> InvoiceList:
    """The caller's invoices.

    Org admin: the org's invoices."""
    return await _list(engine, request, customer, limit, page_token, now)


# ---------------------------------------------------------------------------- one invoice


@_for_both("GET /{who}/payment/invoices/{id}", response_model=InvoiceDetail, responses=errors(404))
async def get_invoice_for_who(
    customer: Customer, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """One of the caller's invoices, with its refunds (extension).

    Org admin: one of the org's invoices, with its refunds (extension)."""
    invoice = await own_invoice(engine, customer=customer, invoice_id=id)
    return await _detail(engine, request, invoice, now)


_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
}
_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}}
}


async def _html_response(
    engine: AsyncEngine, request: Request, invoice: InvoiceRecord, pdf_url: str
) -> HTMLResponse:
    page = render_html(invoice, _issuer(request), pdf_url, await billed_email(engine, invoice))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


_PAGE_HEADERS = {
    "Cache-Control": "private",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@_for_both(
    "GET /{who}/payment/invoices/{id}/pdf",
    response_class=Response,
    responses={**_PDF, **errors(404)},
)
async def get_invoice_pdf_for_who(
    customer: Customer, engine: Engine, request: Request, id: IdInPath
) -> Response:
    """The invoice as a PDF (extension).

    Org admin: the invoice as a PDF (extension)."""
    invoice = await own_invoice(engine, customer=customer, invoice_id=id)
    return await pdf_response(engine, invoice, _issuer(request))


Expires = Annotated[int, Query(ge=0, le=2**40, description="The link's expiry (Unix seconds)")]
Signature = Annotated[str, Query(pattern="^[0-9a-f]{64}$", description="The link's signature")]


def _signed_invoice(kind: str) -> Callable[..., Awaitable[InvoiceRecord]]:
    """The invoice a signed link of `kind` names, its signature checked (a 403 when it is not
    this server's or has expired)."""

    async def signed(
        engine: Engine, now: Now, id: IdInPath, expires: Expires, signature: Signature
    ) -> InvoiceRecord:
        invoice_id = checked_invoice_id(id)
        key = await _link_key(engine, now)
        links.check_signature(key, invoice_id, kind, expires=expires, signature=signature, now=now)
        async with reading(engine) as conn:
            return await get_invoice(conn, invoice_id=invoice_id)

    return signed


SignedPdf = Annotated[InvoiceRecord, Depends(_signed_invoice("pdf"))]
SignedPage = Annotated[InvoiceRecord, Depends(_signed_invoice("html"))]


@links_router.get(
    "/invoices/{id}/pdf", response_class=Response, responses={**_PDF, **errors(403, 404)}
)
async def get_invoice_pdf_by_link(invoice: SignedPdf, engine: Engine, request: Request) -> Response:
    """An invoice's PDF from its signed link (an invoice's `pdf`): no token needed."""
    return await pdf_response(engine, invoice, _issuer(request))


@links_router.get(
    "/invoices/{id}/html", response_class=HTMLResponse, responses={**_HTML, **errors(403, 404)}
)
async def get_invoice_page_by_link(
    invoice: SignedPage, engine: Engine, request: Request, now: Now
) -> HTMLResponse:
    """An invoice's page from its signed link (an invoice's `url`): no token needed."""
    pdf, _url = _links(await _link_key(engine, now), request, invoice, now)
    return await _html_response(engine, request, invoice, pdf)


# --------------------------------------------------------------------------------- paying


@_for_both(
    "POST /{who}/payment/invoices/{id}/pay",
    response_model=InvoiceDetail,
    responses=errors(402, 404, 409),
)
async def pay_invoice_for_who(
    customer: Customer, engine: Engine, request: Request, now: Now, id: IdInPath
) -> InvoiceDetail:
    """Charge an open invoice now with the default payment method (extension); a paid one is
    answered as it is. 402 with what to do when the charge fails.

    Org admin: charge an open invoice of the org now (extension)."""
    paid = await pay_invoice_now(
        engine, processor=processor_of(request), customer=customer, invoice_id=id, now=now
    )
    return await _detail(engine, request, paid, now)


@_for_both(
    "POST /{who}/payment/credits",
    response_model=InvoiceDetail,
    status_code=201,
    responses=errors(402),
)
async def buy_credits_for_who(
    customer: Customer, engine: Engine, request: Request, now: Now, body: BuyCredits
) -> InvoiceDetail:
    """Buy stable API credits (extension): an invoice is issued and charged at once; the
    stable bucket grows by the amount when, and only when, it is paid. 402 with what to do when
    the charge fails: nothing is credited and the invoice stays open.

    Org admin: buy stable API credits for the org (extension)."""
    settings = settings_of(request)
    invoice = await buy_credits(
        engine,
        processor=processor_of(request),
        customer=customer,
        amount=body.amount,
        tax_rates=settings.tax_rates,
        prefix=settings.invoice_prefix,
        now=now,
    )
    return await _detail(engine, request, invoice, now)


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
    id = checked_invoice_id(id)
    async with reading(engine) as conn:
        await get_invoice(conn, invoice_id=id)
    invoice = await refund_invoice(
        engine,
        processor_of(request),
        invoice_id=id,
        amount_micros=micros,
        idempotency_key=body.idempotency_key,
        actor=staff.id,
        now=now,
    )
    return await _detail(engine, request, invoice, now)
