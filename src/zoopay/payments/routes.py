"""Billing information, payment methods, tax readiness and the usage threshold, for a user
(`/user/...`) and, identically, for an org's admins (`/org/...`); and staff's own amount of the
usage threshold for any user or org (`/users/{id}/...`, `/orgs/{id}/...`)."""

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts.service import Org, User
from zoopay.api.deps import Conn, CurrentUser, Engine, Now, Processor
from zoopay.api.openapi import errors
from zoopay.api.pagination import MAX_PAGE
from zoopay.api.routing import ANY_ACCOUNTS, Endpoint, for_user_and_org, json_router
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


_NO_CONTENT: dict[str, Any] = {"status_code": 204, "response_class": Response}


def _for_both(route: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    return for_user_and_org(router, route, **options)


# -- billing information


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


@_for_both("GET /{who}/payment", response_model=Customer, responses=errors(404))
async def get_payment_information_for_who(customer: LedgerCustomer, conn: Conn) -> Customer:
    """Your billing information (404 before you POST it).

    Org admin: the org's billing information (404 before it is POSTed)."""
    return _customer(await flows.read_billing_info(conn, customer=customer))


@_for_both("POST /{who}/payment", response_model=Customer, status_code=201, responses=errors(409))
async def create_payment_information_for_who(
    body: BillingInfo, customer: LedgerCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Give your billing information (409 if you did: PUT to change it).

    Org admin: give the org's billing information (409 if given: PUT to change it)."""
    return await _save_info(engine, processor, customer, body, True, now)


@_for_both("PUT /{who}/payment", response_model=Customer, responses=errors(404))
async def update_payment_information_for_who(
    body: BillingInfo, customer: LedgerCustomer, engine: Engine, processor: Processor, now: Now
) -> Customer:
    """Replace your billing information, whole (404 before you POST it).

    Org admin: replace the org's billing information, whole."""
    return await _save_info(engine, processor, customer, body, False, now)


@_for_both(
    "DELETE /{who}/payment", status_code=204, response_class=Response, responses=errors(404, 409)
)
async def delete_payment_information_for_who(
    customer: LedgerCustomer, engine: Engine, processor: Processor, now: Now
) -> Response:
    """Delete your billing information and cards: refused (409) while money is due.

    Org admin: delete the org's billing information and cards (409 while money is due)."""
    await flows.delete_billing_info(engine, processor=processor, customer=customer, now=now)
    return Response(status_code=204)


# -- the VAT id (extension: Zoo's BillingInfo has no field for it)


@_for_both("PUT /{who}/payment/tax-id", response_model=Customer, responses=errors(404))
async def set_tax_id_for_who(
    body: TaxId, customer: LedgerCustomer, engine: Engine, now: Now
) -> Customer:
    """Set (or, with null, remove) your EU VAT id, shown in Customer.metadata.vat_id
    (extension). It must pass its checksum; GET /user/payment/tax checks its country.

    Org admin: set (or remove) the org's EU VAT id (extension)."""
    vat_id = None
    if body.vat_id is not None:
        if not tax.vat_id_valid(body.vat_id):
            raise BadRequest(f"vat_id {body.vat_id!r} is not a valid EU VAT id")
        vat_id = tax.normalized_vat_id(body.vat_id)
    return _customer(await flows.set_vat_id(engine, customer=customer, vat_id=vat_id, now=now))


# -- tax readiness


@_for_both(
    "GET /{who}/payment/tax", status_code=204, response_class=Response, responses=errors(400)
)
async def validate_customer_tax_information_for_who(
    customer: LedgerCustomer, conn: Conn
) -> Response:
    """204 when your billing information can be taxed; a 400 naming what is missing.

    Org admin: 204 when the org's billing information can be taxed, else a 400."""
    problems = tax.tax_problems(await find_payment_customer(conn, customer=customer))
    if problems:
        raise BadRequest("not ready for automatic tax: " + "; ".join(problems))
    return Response(status_code=204)


# -- setup intents


@_for_both("POST /{who}/payment/intent", response_model=PaymentIntent, status_code=201)
async def create_payment_intent_for_who(
    customer: LedgerCustomer, engine: Engine, processor: Processor, now: Now
) -> PaymentIntent:
    """A setup intent: confirm its client secret with a card (Stripe.js, or, with the embedded
    processor, POST /processor/setup-intents/confirm).

    Org admin: a setup intent for a card of the org."""
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


@_for_both("GET /{who}/payment/methods", response_model=PaymentMethodResultsPage)
async def list_payment_methods_for_who(
    customer: LedgerCustomer,
    engine: Engine,
    processor: Processor,
    limit: MethodLimit = 100,
    page_token: MethodPageToken = None,
) -> PaymentMethodResultsPage:
    """Your cards, the default first, then newest first (kittycad 1.8.0's results page).

    Org admin: the org's cards, the default first, then newest first."""
    offset = _page_offset(page_token)
    cards = await flows.list_cards(engine, processor=processor, customer=customer)
    page = cards[offset : offset + limit]
    more = offset + limit < len(cards)
    return PaymentMethodResultsPage(
        items=[PaymentMethod.of(card) for card in page],
        next_page=_page_token(offset + limit) if more else None,
    )


@_for_both(
    "DELETE /{who}/payment/methods/{id}",
    **_NO_CONTENT,
    responses=errors(404),
)
async def delete_payment_method_for_who(
    id: MethodPath, customer: LedgerCustomer, engine: Engine, processor: Processor
) -> Response:
    """Remove one of your cards (another's, or an unknown id, is a 404).

    Org admin: remove one of the org's cards."""
    await flows.remove_card(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


@_for_both(
    "POST /{who}/payment/methods/{id}/default",
    **_NO_CONTENT,
    responses=errors(404),
)
async def set_default_payment_method_for_who(
    id: MethodPath, customer: LedgerCustomer, engine: Engine, processor: Processor
) -> Response:
    """Make one of your cards the one charged.

    Org admin: make one of the org's cards the one charged (as the user's; kittycad has no
    org method for it)."""
    await flows.make_default(engine, processor=processor, customer=customer, method_id=id)
    return Response(status_code=204)


# -- the card-management page

RETURN_URL_PATTERN, RETURN_URL_LENGTH = r"^https?://[^\s]+$", 2048
ReturnUrl = Annotated[
    str | None,
    Query(
        max_length=RETURN_URL_LENGTH,
        pattern=RETURN_URL_PATTERN,
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


@_for_both(
    "GET /{who}/payment/method-portal-link",
    status_code=303,
    response_class=RedirectResponse,
    responses=_PORTAL,
)
async def redirect_payment_method_portal_link_for_who(
    customer: LedgerCustomer,
    user: CurrentUser,
    engine: Engine,
    processor: Processor,
    now: Now,
    return_url: ReturnUrl = None,
) -> RedirectResponse:
    """Redirects (303) to a page where you manage your cards: with the embedded processor,
    the console's payment methods by a single-use sign-in link valid for 15 minutes (its back
    link leads to `return_url`); with Stripe, a customer-portal session.

    Org admin: redirects (303) to a page where the org's cards are managed (the console's,
    signed in as the admin, with the embedded processor; Stripe's customer portal)."""
    return await _portal(engine, processor, customer, user, return_url, now)


# -- the usage threshold

ExpectedVersion = Annotated[
    int,
    Query(ge=0, le=MAX_VERSION, description="The `version` last read: a stale one is a 409"),
]


async def _set_threshold(
    conn: Conn,
    authority: thresholds.Authority,
    customer: LedgerCustomer,
    amount_micros: int | None,
    expected_version: int,
    now: datetime,
) -> AggregateUsageCollectionThresholdView:
    record = await thresholds.set_threshold(
        conn,
        authority=authority,
        customer=customer,
        amount_micros=amount_micros,
        expected_version=expected_version,
        now=now,
    )
    return AggregateUsageCollectionThresholdView.of(record)


@_for_both(
    "GET /{who}/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
)
async def get_who_usage_collection_threshold(
    customer: LedgerCustomer, conn: Conn
) -> AggregateUsageCollectionThresholdView:
    """The unpaid usage at which you are invoiced early, and where that amount comes from.

    Org admin: the org's threshold."""
    record = await thresholds.usage_threshold(conn, customer=customer)
    return AggregateUsageCollectionThresholdView.of(record)


@_for_both(
    "PUT /{who}/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def set_who_usage_collection_threshold(
    body: AggregateUsageCollectionThresholdSet, customer: LedgerCustomer, conn: Conn, now: Now
) -> AggregateUsageCollectionThresholdView:
    """Choose your threshold, within `customer_bounds` (400 outside them); 409 if
    `expected_version` is not the current version.

    Org admin: choose the org's threshold (400 outside bounds, 409 on a stale version)."""
    amount = to_micros(body.amount)
    return await _set_threshold(
        conn, thresholds.CUSTOMER_AUTHORITY, customer, amount, body.expected_version, now
    )


@_for_both(
    "DELETE /{who}/billing/usage-collection-threshold",
    response_model=AggregateUsageCollectionThresholdView,
    responses=errors(409),
)
async def reset_who_usage_collection_threshold(
    customer: LedgerCustomer, conn: Conn, now: Now, expected_version: ExpectedVersion
) -> AggregateUsageCollectionThresholdView:
    """Back to the default (staff's amount, if any, still wins); 409 on a stale version.

    Org admin: the org's threshold back to the default; 409 on a stale version."""
    return await _set_threshold(
        conn, thresholds.CUSTOMER_AUTHORITY, customer, None, expected_version, now
    )


def _any_threshold(route: str, *statuses: int) -> Callable[[Endpoint], Endpoint]:
    """Staff's route for any user's threshold and, the same, for any org's (an extension)."""
    return for_user_and_org(
        router,
        route,
        ANY_ACCOUNTS,
        response_model=AggregateUsageCollectionThresholdView,
        responses=errors(*statuses),
    )


@_any_threshold("GET /{who}s/{id}/billing/usage-collection-threshold")
async def get_usage_collection_threshold_for_any_who(
    account: User | Org, conn: Conn
) -> AggregateUsageCollectionThresholdView:
    """Staff: a user's threshold; `id` is a user id or email address. A zoopay extension.

    Staff: an org's threshold. A zoopay extension."""
    record = await thresholds.usage_threshold(conn, customer=account.customer)
    return AggregateUsageCollectionThresholdView.of(record)


@_any_threshold("PUT /{who}s/{id}/billing/usage-collection-threshold", 409)
async def set_usage_collection_threshold_for_any_who(
    account: User | Org, body: AggregateUsageCollectionThresholdSet, conn: Conn, now: Now
) -> AggregateUsageCollectionThresholdView:
    """Staff: set the user's `admin_amount`, within `admin_bounds` (400 outside them), which wins
    over the user's own; 409 if `expected_version` is not the current version. A zoopay
    extension.

    Staff: set the org's `admin_amount` (400 outside `admin_bounds`, 409 on a stale version).
    A zoopay extension."""
    amount = to_micros(body.amount)
    return await _set_threshold(
        conn, thresholds.ADMIN_AUTHORITY, account.customer, amount, body.expected_version, now
    )


@_any_threshold("DELETE /{who}s/{id}/billing/usage-collection-threshold", 409)
async def reset_usage_collection_threshold_for_any_who(
    account: User | Org, conn: Conn, now: Now, expected_version: ExpectedVersion
) -> AggregateUsageCollectionThresholdView:
    """Staff: remove the user's `admin_amount` (their own amount, or the default, applies
    again); 409 on a stale version. A zoopay extension.

    Staff: remove the org's `admin_amount`; 409 on a stale version. A zoopay extension."""
    return await _set_threshold(
        conn, thresholds.ADMIN_AUTHORITY, account.customer, None, expected_version, now
    )
