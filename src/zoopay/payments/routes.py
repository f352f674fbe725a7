"""Billing information, payment methods, tax readiness and the usage threshold, for a user
(`/user/...`) and, identically, for an org's admins (`/org/...`)."""

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts.service import User
from zoopay.api.deps import Conn, CurrentUser, Engine, Now, OrgAdmin
from zoopay.api.openapi import errors
from zoopay.api.pagination import MAX_PAGE
from zoopay.api.routing import json_router
from zoopay.console import service as console
from zoopay.db.engine import transaction
from zoopay.errors import BadRequest
from zoopay.ledger.service import Customer as LedgerCustomer
from zoopay.money import to_micros
from zoopay.payments import flows, tax, thresholds
from zoopay.payments.flows import CustomerStatement
from zoopay.payments.schemas import (
    MAX_VERSION,
    AggregateUsageCollectionThresholdSet,
    AggregateUsageCollectionThresholdView,
    BillingInfo,
    Customer,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodResultsPage,
    TaxId,
)
from zoopay.payments.service import find_payment_customer
from zoopay.processors.base import PaymentProcessor

router = json_router(tags=["payments"])


async def get_processor(request: Request) -> PaymentProcessor:
    processor: PaymentProcessor = request.app.state.processor
    return processor


Processor = Annotated[PaymentProcessor, Depends(get_processor)]


async def user_customer(user: CurrentUser) -> LedgerCustomer:
    return user.customer


async def org_customer(admin: OrgAdmin) -> LedgerCustomer:
    return admin.org


UserCustomer = Annotated[LedgerCustomer, Depends(user_customer)]
OrgCustomer = Annotated[LedgerCustomer, Depends(org_customer)]

# Payment-method ids as processors issue them (Stripe's and the embedded one's).
MethodPath = Annotated[
    str,
    Path(
        description="A payment method's id, as listed",
        pattern=r"^pm_[A-Za-z0-9_]{1,60}$",
    ),
]


def _customer(statement: CustomerStatement) -> Customer:
    return Customer.of(
        statement.record, email=statement.email, total_due_micros=statement.total_due_micros
    )


# -- billing information


async def _get_info(conn: Conn, customer: LedgerCustomer) -> Customer:
    return _customer(await flows.read_billing_info(conn, customer=customer))


async def _save_info(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    customer: LedgerCustomer,
    body: BillingInfo,
    creating: bool,
    now: datetime,
) -> Customer:
    statement = await flows.save_billing_info(
        engine,
        processor=processor,
        customer=customer,
        details=body.details(),
        creating=creating,
        now=now,
    )
    return _customer(statement)


@router.get("/user/payment", response_model=Customer, responses=errors(404))
async def get_payment_information_for_user(customer: UserCustomer, conn: Conn) -> Customer:
    """Your billing information (404 before you POST it)."""
    return await _get_info(conn, customer)


@router.post("/user/payment", response_model=Customer, status_code=201, responses=errors(409))
async def create_payment_information_for_user(
    body: BillingInfo, customer: UserCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Give your billing information (409 if you did: PUT to change it)."""
    return await _save_info(engine, processor, customer, body, True, now)


@router.put("/user/payment", response_model=Customer, responses=errors(404))
async def update_payment_information_for_user(
    body: BillingInfo, customer: UserCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Replace your billing information, whole (404 before you POST it)."""
    return await _save_info(engine, processor, customer, body, False, now)


@router.delete(
    "/user/payment", status_code=204, response_class=Response, responses=errors(404, 409)
)
async def delete_payment_information_for_user(
    customer: UserCustomer, engine: Engine, processor: Processor, now: Now
) -> Response:
    """Delete your billing information and cards: refused (409) while money is due."""
    await flows.delete_billing_info(engine, processor=processor, customer=customer, now=now)
    return Response(status_code=204)


@router.get("/org/payment", response_model=Customer, responses=errors(404))
async def get_payment_information_for_org(customer: OrgCustomer, conn: Conn) -> Customer:
    """Org admin: the org's billing information (404 before it is POSTed)."""
    return await _get_info(conn, customer)


@router.post("/org/payment", response_model=Customer, status_code=201, responses=errors(409))
async def create_payment_information_for_org(
    body: BillingInfo, customer: OrgCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Org admin: give the org's billing information (409 if given: PUT to change it)."""
    return await _save_info(engine, processor, customer, body, True, now)


@router.put("/org/payment", response_model=Customer, responses=errors(404))
async def update_payment_information_for_org(
    body: BillingInfo, customer: OrgCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Org admin: replace the org's billing information, whole."""
    return await _save_info(engine, processor, customer, body, False, now)


@router.delete("/org/payment", status_code=204, response_class=Response, responses=errors(404, 409))
async def delete_payment_information_for_org(
    customer: OrgCustomer, engine: Engine, processor: Processor, now: Now
) -> Response:
    """Org admin: delete the org's billing information and cards (409 while money is due)."""
    await flows.delete_billing_info(engine, processor=processor, customer=customer, now=now)
    return Response(status_code=204)


# -- the VAT id (extension: Zoo's BillingInfo has no field for it)


async def _set_vat_id(
    engine: AsyncEngine, customer: LedgerCustomer, body: TaxId, now: datetime
) -> Customer:
    vat_id = None
    if body.vat_id is not None:
        if not tax.vat_id_valid(body.vat_id):
            raise BadRequest(f"vat_id {body.vat_id!r} is not a valid EU VAT id")
        vat_id = tax.normalized_vat_id(body.vat_id)
    return _customer(await flows.set_vat_id(engine, customer=customer, vat_id=vat_id, now=now))


@router.put("/user/payment/tax-id", response_model=Customer, responses=errors(404))
async def set_tax_id_for_user(
    body: TaxId, customer: UserCustomer, engine: Engine, now: Now
) -> Customer:
    """Set (or, with null, remove) your EU VAT id, shown in Customer.metadata.vat_id
    (extension). It must pass its checksum; GET /user/payment/tax checks its country."""
    return await _set_vat_id(engine, customer, body, now)


@router.put("/org/payment/tax-id", response_model=Customer, responses=errors(404))
async def set_tax_id_for_org(
    body: TaxId, customer: OrgCustomer, engine: Engine, now: Now
) -> Customer:
    """Org admin: set (or remove) the org's EU VAT id (extension)."""
    return await _set_vat_id(engine, customer, body, now)


# -- tax readiness


async def _validate_tax(conn: Conn, customer: LedgerCustomer) -> Response:
    problems = tax.tax_problems(await find_payment_customer(conn, customer=customer))
    if problems:
        raise BadRequest("not ready for automatic tax: " + "; ".join(problems))
    return Response(status_code=204)


@router.get("/user/payment/tax", status_code=204, response_class=Response, responses=errors(400))
async def validate_customer_tax_information_for_user(
    customer: UserCustomer, conn: Conn
) -> Response:
    """204 when your billing information can be taxed; a 400 naming what is missing."""
    return await _validate_tax(conn, customer)


@router.get("/org/payment/tax", status_code=204, response_class=Response, responses=errors(400))
async def validate_customer_tax_information_for_org(customer: OrgCustomer, conn: Conn) -> Response:
    """Org admin: 204 when the org's billing information can be taxed, else a 400."""
    return await _validate_tax(conn, customer)


# -- setup intents


@router.post("/user/payment/intent", response_model=PaymentIntent, status_code=201)
async def create_payment_intent_for_user(
    customer: UserCustomer, engine: Engine, processor: Processor, now: Now
) -> PaymentIntent:
    """A setup intent: confirm its client secret with a card (Stripe.js, or, with the embedded
    processor, POST /processor/setup-intents/confirm)."""
    secret = await flows.create_setup_intent(
        engine, processor=processor, customer=customer, now=now
    )
    return PaymentIntent(client_secret=secret)


@router.post("/org/payment/intent", response_model=PaymentIntent, status_code=201)
async def create_payment_intent_for_org(
    customer: OrgCustomer, engine: Engine, processor: Processor, now: Now
) -> PaymentIntent:
    """Org admin: a setup intent for a card of the org."""
    secret = await flows.create_setup_intent(
        engine, processor=processor, customer=customer, now=now
    )
    return PaymentIntent(client_secret=secret)


# -- payment methods

MethodLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")]
MethodPageToken = Annotated[
    str | None, Query(max_length=64, description="`next_page` of the last page")
]
_OFFSET = "payment-methods:"


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_OFFSET}{offset}".encode()).decode().rstrip("=")


def _page_offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if text.startswith(_OFFSET) and text[len(_OFFSET) :].isdigit():
            return int(text[len(_OFFSET) :])
    except ValueError:
        pass
    raise BadRequest("page_token is not one this server issued")


async def _list_methods(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    customer: LedgerCustomer,
    limit: int,
    page_token: str | None,
) -> PaymentMethodResultsPage:
    offset = _page_offset(page_token)
    cards = await flows.list_cards(engine, processor=processor, customer=customer)
    page = cards[offset : offset + limit]
    more = offset + limit < len(cards)
    return PaymentMethodResultsPage(
        items=[PaymentMethod.of(card) for card in page],
        next_page=_page_token(offset + limit) if more else None,
    )


@router.get("/user/payment/methods", response_model=PaymentMethodResultsPage)
async def list_payment_methods_for_user(
    customer: UserCustomer,
    engine: Engine,
    processor: Processor,
    limit: MethodLimit = 100,
    page_token: MethodPageToken = None,
) -> PaymentMethodResultsPage:
    """Your cards, the default first, then newest first (kittycad 1.8.0's results page)."""
    return await _list_methods(engine, processor, customer, limit, page_token)


@router.get("/org/payment/methods", response_model=PaymentMethodResultsPage)
async def list_payment_methods_for_org(
    customer: OrgCustomer,
    engine: Engine,
    processor: Processor,
    limit: MethodLimit = 100,
    page_token: MethodPageToken = None,
) -> PaymentMethodResultsPage:
    """Org admin: the org's cards, the default first, then newest first."""
    return await _list_methods(engine, processor, customer, limit, page_token)


@router.delete(
    "/user/payment/methods/{id}",
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
async def delete_payment_method_for_user(
    id: MethodPath, customer: UserCustomer, engine: Engine, processor: Processor
) -> Response:
    """Remove one of your cards (another's, or an unknown id, is a 404)."""
    await flows.remove_card(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


@router.delete(
    "/org/payment/methods/{id}",
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
async def delete_payment_method_for_org(
    id: MethodPath, customer: OrgCustomer, engine: Engine, processor: Processor
) -> Response:
    """Org admin: remove one of the org's cards."""
    await flows.remove_card(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


@router.post(
    "/user/payment/methods/{id}/default",
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
async def set_default_payment_method_for_user(
    id: MethodPath, customer: UserCustomer, engine: Engine, processor: Processor
) -> Response:
    """Make one of your cards the one charged."""
    await flows.make_default(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


@router.post(
    "/org/payment/methods/{id}/default",
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
async def set_default_payment_method_for_org(
    id: MethodPath, customer: OrgCustomer, engine: Engine, processor: Processor
) -> Response:
    """Org admin: make one of the org's cards the one charged (as the user's; kittycad has no
    org method for it)."""
    await flows.make_default(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


# -- the card-management page

ReturnUrl = Annotated[
    str | None,
    Query(
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Where the page's back link leads (http or https)",
    ),
]
_PORTAL: dict[int | str, dict[str, Any]] = {
    303: {
        "description": "To the page where the customer manages their cards",
        "headers": {
            "Location": {
                "description": (
                    "The page: with the embedded processor, a path on this server (the"
                    " console's single-use sign-in link, opening its payment methods)"
                ),
                "schema": {"type": "string"},
            }
        },
    }
}


async def _portal(
    engine: AsyncEngine,
    processor: PaymentProcessor,
    customer: LedgerCustomer,
    user: User,
    return_url: str | None,
    now: datetime,
) -> RedirectResponse:
    """The processor's card page (Stripe's customer portal) or, with none (the embedded
    processor), the console's payment-methods page by a single-use sign-in link for `user`."""
    url = await flows.portal_link(
        engine, processor=processor, customer=customer, return_url=return_url or "", now=now
    )
    if url is None:
        async with transaction(engine) as conn:
            link = await console.create_link(
                conn, user=user, created_by="method-portal-link", now=now
            )
        url = console.link_path(link.secret, console.billing_page(customer.kind, return_url))
    return RedirectResponse(url, status_code=303)


@router.get(
    "/user/payment/method-portal-link",
    status_code=303,
    response_class=RedirectResponse,
    responses=_PORTAL,
)
async def redirect_payment_method_portal_link_for_user(
    customer: UserCustomer,
    user: CurrentUser,
    engine: Engine,
    processor: Processor,
    now: Now,
    return_url: ReturnUrl = None,
) -> RedirectResponse:
    """Redirects (303) to a page where you manage your cards: with the embedded processor,
    the console's payment methods by a single-use sign-in link valid for 15 minutes (its back
    link leads to `return_url`); with Stripe, a customer-portal session."""
    return await _portal(engine, processor, customer, user, return_url, now)


@router.get(
    "/org/payment/method-portal-link",
    status_code=303,
    response_class=RedirectResponse,
    responses=_PORTAL,
)
async def redirect_payment_method_portal_link_for_org(
    customer: OrgCustomer,
    user: CurrentUser,
    engine: Engine,
    processor: Processor,
    now: Now,
    return_url: ReturnUrl = None,
) -> RedirectResponse:
    """Org admin: redirects (303) to a page where the org's cards are managed (the console's,
    signed in as the admin, with the embedded processor; Stripe's customer portal)."""
    return await _portal(engine, processor, customer, user, return_url, now)


# -- the usage threshold

ExpectedVersion = Annotated[
    int,
    Query(ge=0, le=MAX_VERSION, description="The `version` last read: a stale one is a 409"),
]


async def _threshold(conn: Conn, customer: LedgerCustomer) -> AggregateUsageCollectionThresholdView:
    record = await thresholds.usage_threshold(conn, customer=customer)
    return AggregateUsageCollectionThresholdView.of(record)


async def _set_threshold(
    conn: Conn,
    customer: LedgerCustomer,
    amount_micros: int | None,
    expected_version: int,
    now: datetime,
) -> AggregateUsageCollectionThresholdView:
    record = await thresholds.set_customer_threshold(
        conn,
        customer=customer,
        amount_micros=amount_micros,
        expected_version=expected_version,
        now=now,
    )
    return AggregateUsageCollectionThresholdView.of(record)


@router.get(
    "/user/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
)
async def get_user_usage_collection_threshold(
    customer: UserCustomer, conn: Conn
) -> AggregateUsageCollectionThresholdView:
    """The unpaid usage at which you are invoiced early, and where that amount comes from."""
    return await _threshold(conn, customer)


@router.put(
    "/user/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def set_user_usage_collection_threshold(
    body: AggregateUsageCollectionThresholdSet, customer: UserCustomer, conn: Conn, now: Now
) -> AggregateUsageCollectionThresholdView:
    """Choose your threshold, within `customer_bounds` (400 outside them); 409 if
    `expected_version` is not the current version."""
    amount = to_micros(body.amount)
    return await _set_threshold(conn, customer, amount, body.expected_version, now)


@router.delete(
    "/user/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def reset_user_usage_collection_threshold(
    customer: UserCustomer, conn: Conn, now: Now, expected_version: ExpectedVersion
) -> AggregateUsageCollectionThresholdView:
    """Back to the default (staff's amount, if any, still wins); 409 on a stale version."""
    return await _set_threshold(conn, customer, None, expected_version, now)


@router.get(
    "/org/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
)
async def get_org_usage_collection_threshold(
    customer: OrgCustomer, conn: Conn
) -> AggregateUsageCollectionThresholdView:
    """Org admin: the org's threshold."""
    return await _threshold(conn, customer)


@router.put(
    "/org/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def set_org_usage_collection_threshold(
    body: AggregateUsageCollectionThresholdSet, customer: OrgCustomer, conn: Conn, now: Now
) -> AggregateUsageCollectionThresholdView:
    """Org admin: choose the org's threshold (400 outside bounds, 409 on a stale version)."""
    amount = to_micros(body.amount)
    return await _set_threshold(conn, customer, amount, body.expected_version, now)


@router.delete(
    "/org/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def reset_org_usage_collection_threshold(
    customer: OrgCustomer, conn: Conn, now: Now, expected_version: ExpectedVersion
) -> AggregateUsageCollectionThresholdView:
    """Org admin: the org's threshold back to the default; 409 on a stale version."""
    return await _set_threshold(conn, customer, None, expected_version, now)
