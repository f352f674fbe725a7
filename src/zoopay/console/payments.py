"""The console's billing page: payment methods, billing information, tax status, the
usage-collection threshold. The API's payment services and rules: a user's own; an org's for
its admins; staff's own amount of any customer's threshold.

Adding a card: a setup intent, then its confirmation with the card. On the embedded processor
zoopay's own form confirms it (Stripe's test tokens); on stripe, Stripe Elements does, in the
browser (Stripe.js, loaded from js.stripe.com as Stripe requires, with the publishable key of
ZOOPAY_STRIPE_PUBLISHABLE_KEY; the card never reaches zoopay), and the form then posts the
intent's id: the card it attached is read back from Stripe (and made the default if there is
none, as the `setup_intent.succeeded` webhook would)."""

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request, Response
from pydantic import ValidationError

from zoopay.accounts.service import MAX_EMAIL
from zoopay.api.deps import engine_of, processor_of
from zoopay.api.errors import describe_validation
from zoopay.console import service as console
from zoopay.console.routes import AccountKind, Kind, paying_account, paying_customer, staff_form
from zoopay.console.web import (
    ConsoleRoute,
    checked_form,
    now_of,
    redirect,
    render,
    viewer,
)
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest, NotFound
from zoopay.ledger.service import Customer
from zoopay.money import InvalidAmount, parse_dollars, to_micros
from zoopay.payments import flows, tax, thresholds
from zoopay.payments.routes import RETURN_URL_LENGTH, RETURN_URL_PATTERN, MethodPath, ReturnUrl
from zoopay.payments.schemas import AggregateUsageCollectionThresholdView, BillingInfo
from zoopay.payments.service import find_payment_customer
from zoopay.processors.base import ProcessorError
from zoopay.processors.embedded import TEST_CARDS, EmbeddedProcessor
from zoopay.processors.stripe import StripeProcessor

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


async def _billing_form(
    request: Request, kind: AccountKind
) -> tuple[dict[str, str], Customer, str]:
    """A form of the billing page, its CSRF token checked; whose money it handles; and the
    billing page to show after it, its back link kept."""
    who = await viewer(request)
    done = console.billing_page(kind, _back(request))  # a bad back link refuses before any work
    form = await checked_form(request, who)
    return form, await paying_customer(request, who, kind), done


def _back(request: Request) -> str | None:
    """The page's back link (its `return_url`), which its forms carry in their action's query
    so that it outlives the first post."""
    back = request.query_params.get("return_url")
    # fullmatch: the pattern's `$` would also let a final newline through, which the page's
    # own check (the API's ReturnUrl) refuses.
    if back is not None and (len(back) > RETURN_URL_LENGTH or not _RETURN_URL.fullmatch(back)):
        raise BadRequest("return_url: an http or https URL of at most 2048 characters")
    return back


_RETURN_URL = re.compile(RETURN_URL_PATTERN)


def _back_query(back: str | None) -> str:
    return f"?{urlencode({'return_url': back})}" if back else ""


@router.get("/{kind}/billing")
async def billing_page(request: Request, kind: Kind, return_url: ReturnUrl = None) -> Response:
    """`return_url`: where the page's back link leads (the product that sent the customer here
    by /user/payment/method-portal-link)."""
    who = await viewer(request)
    account = await paying_account(request, who, kind)
    customer = account.customer
    cards = await flows.list_cards(
        engine_of(request), processor=processor_of(request), customer=customer
    )
    async with reading(engine_of(request)) as conn:
        record = await find_payment_customer(conn, customer=customer)
        threshold = AggregateUsageCollectionThresholdView.of(
            await thresholds.usage_threshold(conn, customer=customer)
        )
    has_info = record is not None and record.billing_info_at is not None
    return render(
        request,
        who,
        "billing.html",
        account=account,
        cards=cards,
        info=record.details if has_info and record else None,
        vat_id=record.vat_id if record else None,
        tax_problems=tax.tax_problems(record),
        threshold=threshold,
        takes_cards=_takes_cards(request),
        back=return_url,
        back_query=_back_query(return_url),
    )


def _takes_cards(request: Request) -> bool:
    """Whether this server can take a card: always on embedded; on stripe, with a key."""
    processor = processor_of(request)
    return not isinstance(processor, StripeProcessor) or bool(_publishable_key(request))


def _publishable_key(request: Request) -> str | None:
    key: str | None = request.app.state.stripe_publishable_key
    return key


@router.post("/{kind}/billing/card")
async def card_form(request: Request, kind: Kind) -> Response:
    """Step one of adding a card: a setup intent, and zoopay's own card form to confirm it."""
    who = await viewer(request)
    back_query = _back_query(_back(request))  # a bad back link refuses before any work
    await checked_form(request, who)
    account = await paying_account(request, who, kind)
    processor = processor_of(request)
    if not _takes_cards(request):
        raise NotFound(
            "this server takes cards with Stripe Elements and has no publishable key"
            " (ZOOPAY_STRIPE_PUBLISHABLE_KEY)"
        )
    secret = await flows.create_setup_intent(
        engine_of(request), processor=processor, customer=account.customer, now=now_of(request)
    )
    if isinstance(processor, EmbeddedProcessor):
        return render(
            request,
            who,
            "card.html",
            account=account,
            client_secret=secret,
            cards=TEST_CARDS,
            back_query=back_query,
        )
    page = render(
        request,
        who,
        "card.html",
        account=account,
        client_secret=secret,
        publishable_key=_publishable_key(request),
        back_query=back_query,
    )
    page.headers["Content-Security-Policy"] = STRIPE_ELEMENTS_CSP
    return page


# Stripe.js and its frames, as Stripe documents them for a Content-Security-Policy; the rest as
# every console page.
STRIPE_ELEMENTS_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self' https://js.stripe.com;"
    " frame-src https://js.stripe.com https://hooks.stripe.com;"
    " connect-src https://api.stripe.com; img-src 'self' https://*.stripe.com;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SETUP_INTENT_ID = re.compile(r"seti_[A-Za-z0-9]{1,64}")


@router.post("/{kind}/billing/card/stripe")
async def card_confirmed_by_stripe(request: Request, kind: Kind) -> Response:
    """After Stripe Elements confirmed the setup intent in the browser: its id, to read the
    card back from Stripe; the page then lists it."""
    form, customer, done = await _billing_form(request, kind)
    processor = processor_of(request)
    if not isinstance(processor, StripeProcessor):
        raise NotFound("this server's processor confirms cards with zoopay's own form")
    setup_intent = form.get("setup_intent", "")
    if not SETUP_INTENT_ID.fullmatch(setup_intent):
        raise BadRequest("the card was not confirmed: add it again")
    await flows.adopt_confirmed_card(
        engine_of(request), processor=processor, customer=customer, setup_intent_id=setup_intent
    )
    return redirect(done)


@router.post("/{kind}/billing/card/confirm")
async def card_confirm(request: Request, kind: Kind) -> Response:
    """Step two: confirm the setup intent with the card, as POST /processor/setup-intents/confirm
    does (the client secret is the credential; it works once)."""
    form, _customer, done = await _billing_form(request, kind)
    processor = processor_of(request)
    if not isinstance(processor, EmbeddedProcessor):
        raise NotFound("this server's processor takes cards with Stripe Elements")
    secret, card = form.get("client_secret", ""), form.get("card", "")
    if not secret or len(secret) > 200 or not card or len(card) > 64:
        raise BadRequest("choose a card")
    try:
        await processor.confirm_setup_intent(secret, card)
    except ProcessorError as error:
        raise flows.processor_refusal(error) from None
    return redirect(done)


@router.post("/{kind}/billing/cards/{method_id}/{action}")
async def card_action(
    request: Request,
    kind: Kind,
    method_id: MethodPath,
    action: Annotated[str, Path(pattern="^(default|remove)$")],
) -> Response:
    _form, customer, done = await _billing_form(request, kind)
    change = flows.make_default if action == "default" else flows.remove_card
    await change(
        engine_of(request), processor=processor_of(request), customer=customer, method_id=method_id
    )
    return redirect(done)


def _billing_info(form: dict[str, str]) -> BillingInfo:
    """The form as the API's BillingInfo, validated by the same model."""
    fields = ("street1", "street2", "city", "state", "zip")
    address: dict[str, Any] = {f: form.get(f, "").strip() or None for f in fields}
    address["country"] = form.get("country", "").strip().upper()
    body: dict[str, Any] = {
        "name": form.get("name", "").strip() or None,
        "phone": form.get("phone", "").strip(),
        "address": address if address["country"] else None,
    }
    try:
        return BillingInfo.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation(exc.errors())) from None


@router.post("/{kind}/billing/info")
async def billing_info_save(request: Request, kind: Kind) -> Response:
    form, customer, done = await _billing_form(request, kind)
    info = _billing_info(form)
    async with reading(engine_of(request)) as conn:
        record = await find_payment_customer(conn, customer=customer)
    await flows.save_billing_info(
        engine_of(request),
        processor=processor_of(request),
        customer=customer,
        details=info.details(),
        creating=record is None or record.billing_info_at is None,
        now=now_of(request),
    )
    return redirect(done)


@router.post("/{kind}/billing/tax-id")
async def tax_id_save(request: Request, kind: Kind) -> Response:
    form, customer, done = await _billing_form(request, kind)
    vat_id = form.get("vat_id", "").strip() or None
    if vat_id is not None and len(vat_id) > 32:
        raise BadRequest("a VAT id is at most 32 characters")
    await flows.set_vat_id(
        engine_of(request), customer=customer, vat_id=vat_id, now=now_of(request)
    )
    return redirect(done)


def _threshold_change(form: dict[str, str]) -> tuple[int | None, int]:
    """A threshold form's amount (blank: none) and the version its page showed."""
    text = form.get("amount", "").strip()
    try:
        amount = to_micros(parse_dollars(text)) if text else None
    except InvalidAmount as exc:
        raise BadRequest(f"amount: {exc}") from None
    version = form.get("version", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (version.isascii() and version.isdigit()) or len(version) > 10:
        raise BadRequest("the form is stale: reload the page")
    return amount, int(version)


async def _set_threshold(
    request: Request, authority: thresholds.Authority, customer: Customer, form: dict[str, str]
) -> None:
    amount, version = _threshold_change(form)
    async with transaction(engine_of(request)) as conn:
        await thresholds.set_threshold(
            conn,
            authority=authority,
            customer=customer,
            amount_micros=amount,
            expected_version=version,
            now=now_of(request),
        )


@router.post("/{kind}/billing/threshold")
async def threshold_save(request: Request, kind: Kind) -> Response:
    form, customer, done = await _billing_form(request, kind)
    await _set_threshold(request, thresholds.CUSTOMER_AUTHORITY, customer, form)
    return redirect(done)


@router.post("/staff/{kind}/{customer_id}/threshold")
async def staff_threshold_save(
    request: Request, kind: Kind, customer_id: Annotated[str, Path(max_length=MAX_EMAIL)]
) -> Response:
    """Staff: their own amount of a customer's threshold (blank: removed), as PUT and DELETE
    /users/{id}/billing/usage-collection-threshold."""
    _staff, form, customer = await staff_form(request, kind, customer_id)
    await _set_threshold(request, thresholds.ADMIN_AUTHORITY, customer, form)
    return redirect(f"/console/staff/{kind}/{customer.id}")
