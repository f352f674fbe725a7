"""The `stripe` processor: Stripe holds customers, cards, setup and payment intents and refunds.

It speaks to Stripe (or a test server at `ZOOPAY_STRIPE_API_BASE`) with the official SDK's
`StripeClient` on its httpx client, through the `*_async` methods only: no call blocks the
event loop. zoopay still owns plans, invoices and the ledger.

Idempotency: every charge and refund carries zoopay's key twice, as Stripe's `Idempotency-Key`
(which answers the first result to a retry within Stripe's 24 hours) and in the object's
metadata (`zoopay_idempotency_key`), which is how `find_charge` and a retry after those 24 hours
find it. Stripe cannot look an object up by idempotency key: `find_charge` uses the Search API
(`metadata['zoopay_idempotency_key']:'KEY'`); a server without it (localstripe, the test server)
answers 404, and then every payment intent is listed and filtered. Stripe's search lags writes
by up to about a minute: a charge made in the last minute may not be found yet, and charging
again with the same key is still safe (Stripe answers the first charge). A new customer
carries a key of its request (`customer_key`), so a retry after a lost answer makes no second.
"""

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

import stripe

from zoopay.processors.base import (
    Card,
    Charge,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    CustomerRequest,
    CustomerResult,
    ProcessorError,
    ProcessorUnavailable,
    Refund,
    SetupIntent,
    check_same_charge,
    each_call,
)

KEY_METADATA = "zoopay_idempotency_key"
DESCRIPTION_METADATA = "zoopay_description"
# Seconds one request to Stripe may take; the SDK retries network failures twice (POSTs with
# an idempotency key, so a retry never acts twice).
REQUEST_TIMEOUT = 20.0
NETWORK_RETRIES = 2
PAGE = 100
# Charges in flight at once in a batch (`charge_many`): each is a request to Stripe, whose
# rate limit is per account (100 a second in live mode by default).
CHARGE_CONCURRENCY = 16


def customer_key(email: str, name: str | None, metadata: Mapping[str, str]) -> str:
    """The `Idempotency-Key` of a new customer: the same for the same request, so that asking
    again after a lost answer (the next billing run, within Stripe's 24 hours) answers the
    customer made the first time rather than making a second. It digests the whole request,
    as Stripe refuses a key sent again with other parameters (a changed email makes a new
    customer, as a first request would)."""
    request = json.dumps([email, name, sorted(metadata.items())])
    return f"zoopay-customer:{hashlib.sha256(request.encode()).hexdigest()}"


@dataclass(frozen=True)
class StripeConfig:
    api_key: str
    # None: Stripe itself. A test server (localstripe) otherwise, e.g. http://127.0.0.1:8420.
    api_base: str | None = None


def _plain(obj: Any) -> dict[str, Any]:
    """A response as plain data: Stripe's test servers leave out fields that the SDK's typed
    attributes assume, so reading goes through `.get` on dicts."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


def _unavailable(exc: stripe.StripeError) -> NoReturn:
    raise ProcessorUnavailable(f"Stripe did not answer: {type(exc).__name__}") from exc


def _refused(exc: stripe.StripeError) -> NoReturn:
    """An answer that refuses the request: a ProcessorError with Stripe's code."""
    if isinstance(exc, stripe.IdempotencyError):
        raise ProcessorError(
            "idempotency_key_in_use", "this idempotency key was used for another request"
        ) from exc
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        _unavailable(exc)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        # zoopay's own key is wrong: nothing a customer can act on, and nothing was done.
        raise ProcessorUnavailable("Stripe refused zoopay's API key") from exc
    status = exc.http_status
    code = exc.code or ("resource_missing" if status == 404 else "invalid_request")
    raise ProcessorError(code, exc.user_message or "Stripe refused the request") from exc


def _created(data: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(data["created"]), UTC)


def _card(method: Mapping[str, Any], default_id: str | None) -> Card:
    card = method.get("card") or {}
    return Card(
        id=method["id"],
        brand=card.get("brand") or "unknown",
        last4=card.get("last4") or "",
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
        country=card.get("country"),
        funding=card.get("funding"),
        fingerprint=card.get("fingerprint"),
        created_at=_created(method),
        is_default=method["id"] == default_id,
    )


def _id_of(value: Any) -> str | None:
    """An id field, expanded or not."""
    if value is None or isinstance(value, str):
        return value
    return cast(str, value["id"])


def charge_of_intent(intent: Mapping[str, Any]) -> Charge:
    """A payment intent as zoopay's Charge. An off-session charge that needs 3-D Secure is
    answered by Stripe as a decline with `authentication_required`: the customer must act."""
    status = intent["status"]
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code")
    message = error.get("message")
    if status == "succeeded":
        result, code, message = ChargeStatus.SUCCEEDED, None, None
    elif status == "canceled":
        # Before the off-session decline's `authentication_required`: a canceled intent can
        # never succeed, whatever its last error was.
        result, code = ChargeStatus.CANCELED, "canceled"
        message = "The payment was canceled before the customer authenticated it."
    elif status == "requires_action" or code == "authentication_required":
        result = ChargeStatus.REQUIRES_ACTION
        code = code or "authentication_required"
        message = message or "This payment requires the customer to authenticate."
    elif status == "processing":
        # A card answers at once; anything else is not known yet: ask again later.
        raise ProcessorUnavailable(f"payment intent {intent['id']} is still processing")
    else:
        result = ChargeStatus.FAILED
        code = code or status
        message = message or f"The payment did not go through ({status})."
    return Charge(
        id=intent["id"],
        idempotency_key=(intent.get("metadata") or {}).get(KEY_METADATA, ""),
        status=result,
        amount_cents=int(intent["amount"]),
        currency=intent["currency"],
        payment_method_id=_id_of(intent.get("payment_method")),
        failure_code=code,
        failure_message=message,
    )


def same_charge(intent: Mapping[str, Any], request: ChargeRequest) -> Charge:
    """An intent found under the request's key, as its Charge, if it is the charge the request
    asked for; ProcessorError(`idempotency_key_in_use`) otherwise (`check_same_charge`). Read
    as Stripe sent it: a webhook's intent is whatever its payload holds."""
    check_same_charge(
        request,
        customer_id=_id_of(intent.get("customer")),
        amount_cents=intent.get("amount"),
        currency=intent.get("currency"),
    )
    return charge_of_intent(intent)


def _refund(refund: Mapping[str, Any], charge_id: str) -> Refund:
    return Refund(
        id=refund["id"],
        charge_id=_id_of(refund.get("payment_intent")) or charge_id,
        idempotency_key=(refund.get("metadata") or {}).get(KEY_METADATA, ""),
        amount_cents=int(refund["amount"]),
        status=refund.get("status") or "succeeded",
    )


def _search_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class StripeProcessor:
    name = "stripe"

    def __init__(self, config: StripeConfig) -> None:
        self._http = stripe.HTTPXClient(timeout=REQUEST_TIMEOUT)
        self._client = stripe.StripeClient(
            config.api_key,
            base_addresses={"api": config.api_base.rstrip("/")} if config.api_base else None,
            http_client=self._http,
            max_network_retries=NETWORK_RETRIES,
        )
        # False once the server answered that it has no Search API (localstripe).
        self._search = True

    @property
    def client(self) -> stripe.StripeClient:
        """The SDK client (the tests confirm setup intents with it, as Stripe.js would)."""
        return self._client

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- customers

    async def create_customer(
        self, *, email: str, name: str | None, metadata: dict[str, str]
    ) -> str:
        params: stripe.params.CustomerCreateParams = {"email": email, "metadata": metadata}
        if name is not None:
            params["name"] = name
        key = customer_key(email, name, metadata)
        try:
            customer = await self._client.v1.customers.create_async(
                params, {"idempotency_key": key}
            )
        except stripe.StripeError as exc:
            _refused(exc)
        return customer.id

    async def create_customers(self, requests: Sequence[CustomerRequest]) -> list[CustomerResult]:
        # Stripe has no batch call: one request each, as many at once as charges go.
        async def create(request: CustomerRequest) -> str:
            return await self.create_customer(
                email=request.email, name=request.name, metadata=request.metadata
            )

        return await each_call(create, requests, concurrency=CHARGE_CONCURRENCY)

    async def update_customer(self, customer_id: str, *, email: str, name: str | None) -> None:
        params: stripe.params.CustomerUpdateParams = {"email": email, "name": name or ""}
        try:
            await self._client.v1.customers.update_async(customer_id, params)
        except stripe.StripeError as exc:
            _refused(exc)

    async def _customer(self, customer_id: str) -> dict[str, Any]:
        try:
            customer = _plain(await self._client.v1.customers.retrieve_async(customer_id))
        except stripe.StripeError as exc:
            _refused(exc)
        if customer.get("deleted"):
            raise ProcessorError("resource_missing", f"No such customer: {customer_id!r}")
        return customer

    # -- setup intents and payment methods

    async def create_setup_intent(self, customer_id: str) -> SetupIntent:
        try:
            intent = await self._client.v1.setup_intents.create_async(
                {"customer": customer_id, "usage": "off_session"}
            )
        except stripe.StripeError as exc:
            _refused(exc)
        if intent.client_secret is None:  # pragma: no cover - Stripe always sends one
            raise ProcessorUnavailable("Stripe answered a setup intent without a client secret")
        return SetupIntent(id=intent.id, client_secret=intent.client_secret)

    async def _methods(self, customer_id: str) -> AsyncIterator[dict[str, Any]]:
        params: stripe.params.PaymentMethodListParams = {
            "customer": customer_id,
            "type": "card",
            "limit": PAGE,
        }
        try:
            page = await self._client.v1.payment_methods.list_async(params)
            async for method in page.auto_paging_iter():
                yield _plain(method)
        except stripe.StripeError as exc:
            _refused(exc)

    async def list_payment_methods(self, customer_id: str) -> list[Card]:
        default_id = await self.default_payment_method(customer_id)
        cards = [_card(method, default_id) async for method in self._methods(customer_id)]
        cards.sort(key=lambda card: (card.created_at, card.id), reverse=True)
        # The default first, then newest first (a stable sort keeps the newest-first order).
        return sorted(cards, key=lambda card: not card.is_default)

    async def default_payment_method(self, customer_id: str) -> str | None:
        customer = await self._customer(customer_id)
        settings = customer.get("invoice_settings") or {}
        return _id_of(settings.get("default_payment_method"))

    async def _own_method(self, customer_id: str, payment_method_id: str) -> dict[str, Any]:
        """The method, if it is attached to this customer: another's is `resource_missing`,
        exactly as one that does not exist."""
        missing = ProcessorError(
            "resource_missing", f"No such payment method: {payment_method_id!r}"
        )
        if not payment_method_id.startswith("pm_"):
            # Stripe turns test tokens (pm_card_visa) into new methods on a read: never here.
            raise missing
        try:
            method = _plain(await self._client.v1.payment_methods.retrieve_async(payment_method_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise missing from exc
            _refused(exc)
        except stripe.StripeError as exc:
            _refused(exc)
        if _id_of(method.get("customer")) != customer_id:
            raise missing
        return method

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        await self._own_method(customer_id, payment_method_id)
        await self._set_default(customer_id, payment_method_id)

    async def _set_default(self, customer_id: str, payment_method_id: str | None) -> None:
        # Stripe unsets a field given as the empty string.
        params: stripe.params.CustomerUpdateParams = {
            "invoice_settings": {"default_payment_method": payment_method_id or ""}
        }
        try:
            await self._client.v1.customers.update_async(customer_id, params)
        except stripe.StripeError as exc:
            _refused(exc)

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        await self._own_method(customer_id, payment_method_id)
        was_default = await self.default_payment_method(customer_id) == payment_method_id
        try:
            await self._client.v1.payment_methods.detach_async(payment_method_id)
        except stripe.StripeError as exc:
            _refused(exc)
        if was_default:
            # As the embedded processor: detaching the default leaves the customer without one
            # (Stripe does so itself; a test server may not).
            await self._set_default(customer_id, None)

    async def adopt_default(self, customer_id: str, payment_method_id: str) -> bool:
        """Make the method the customer's default if they have none (a card confirmed through
        Stripe.js is attached by Stripe; zoopay learns of it from `setup_intent.succeeded`).
        Answers whether it did."""
        if await self.default_payment_method(customer_id) is not None:
            return False
        await self._own_method(customer_id, payment_method_id)
        await self._set_default(customer_id, payment_method_id)
        return True

    async def confirmed_method(self, customer_id: str, setup_intent_id: str) -> str:
        """The payment method a setup intent of this customer's attached once Stripe.js
        confirmed it (the console's Stripe Elements form); `resource_missing` for another
        customer's intent or one that does not exist, `setup_intent_unexpected_state` for one
        not (yet) succeeded."""
        try:
            intent = _plain(await self._client.v1.setup_intents.retrieve_async(setup_intent_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise ProcessorError("resource_missing", "No such setup intent") from exc
            _refused(exc)
        except stripe.StripeError as exc:
            _refused(exc)
        method_id = _id_of(intent.get("payment_method"))
        if _id_of(intent.get("customer")) != customer_id:
            raise ProcessorError("resource_missing", "No such setup intent")
        if intent.get("status") != "succeeded" or method_id is None:
            raise ProcessorError(
                "setup_intent_unexpected_state",
                "The card was not confirmed: add it again",
            )
        return method_id

    # -- charges and refunds

    async def charge(self, request: ChargeRequest) -> Charge:
        customer_id, key = request.customer_id, request.idempotency_key
        if request.amount_cents <= 0:
            raise ProcessorError("invalid_amount", "amount_cents must be a positive integer")
        if not key:
            raise ProcessorError("invalid_request", "an idempotency key is required")
        existing = await self._intent_by_key(key)
        if existing is not None:
            return same_charge(existing, request)
        if request.payment_method_id is not None:
            # Never another customer's card (Stripe refuses it too; a test server may not).
            await self._own_method(customer_id, request.payment_method_id)
        method_id = request.payment_method_id or await self.default_payment_method(customer_id)
        if method_id is None:
            raise ProcessorError(
                "no_payment_method", "the customer has no default payment method to charge"
            )
        params: stripe.params.PaymentIntentCreateParams = {
            "amount": request.amount_cents,
            "currency": request.currency,
            "customer": customer_id,
            # The method is a saved card, which never redirects: no `return_url` is needed.
            "payment_method": method_id,
            "confirm": True,
            "off_session": True,
            # In metadata rather than `description`, which localstripe refuses; Stripe's
            # dashboard shows both.
            "metadata": {KEY_METADATA: key, DESCRIPTION_METADATA: request.description[:500]},
        }
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": f"zoopay-charge:{key}"}
            )
        except stripe.CardError as exc:
            return await self._declined(exc, key)
        except stripe.StripeError as exc:
            _refused(exc)
        return charge_of_intent(_plain(intent))

    async def _declined(self, exc: stripe.CardError, idempotency_key: str) -> Charge:
        """A decline is a Charge, not an error: Stripe sends the failed intent in the error;
        a server that does not is asked for it by key."""
        error = exc.error
        sent = error.payment_intent if error is not None else None
        intent = _plain(sent) if sent is not None else await self._intent_by_key(idempotency_key)
        if intent is None:
            code = exc.code or "card_declined"
            raise ProcessorError(code, exc.user_message or "Your card was declined.") from exc
        if not intent.get("last_payment_error"):
            decline = error.decline_code if error is not None else None
            intent["last_payment_error"] = {
                "code": exc.code,
                "decline_code": decline,
                "message": exc.user_message,
            }
        return charge_of_intent(intent)

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeResult]:
        return await each_call(self.charge, requests, concurrency=CHARGE_CONCURRENCY)

    async def find_charge(self, request: ChargeRequest) -> Charge | None:
        intent = await self._intent_by_key(request.idempotency_key)
        return None if intent is None else same_charge(intent, request)

    async def _intent_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = []
        async for intent in self._intents_maybe_with(idempotency_key):
            if (intent.get("metadata") or {}).get(KEY_METADATA) == idempotency_key:
                found.append(intent)
        # One per key; should a race have made two, the first made answers.
        found.sort(key=lambda intent: (int(intent["created"]), intent["id"]))
        return found[0] if found else None

    async def _intents_maybe_with(self, idempotency_key: str) -> AsyncIterator[dict[str, Any]]:
        """Payment intents among which the key's is, if it exists: those the Search API finds,
        or every one on a server without search."""
        try:
            if self._search:
                query = f"metadata['{KEY_METADATA}']:{_search_literal(idempotency_key)}"
                try:
                    result = await self._client.v1.payment_intents.search_async({"query": query})
                except stripe.InvalidRequestError as exc:
                    if exc.http_status != 404:
                        raise
                    self._search = False
                else:
                    async for intent in result.auto_paging_iter():
                        yield _plain(intent)
                    return
            page = await self._client.v1.payment_intents.list_async({"limit": PAGE})
            async for intent in page.auto_paging_iter():
                yield _plain(intent)
        except stripe.StripeError as exc:
            _refused(exc)

    async def cancel_charge(self, charge_id: str, *, request: ChargeRequest) -> Charge:
        """Stripe cancels an intent in any `requires_*` status; one the customer completed
        between the read and the cancel is refused (`payment_intent_unexpected_state`), and is
        then answered as it is, read again. An intent that is not the request's charge (its
        amount changed at Stripe, say) is neither canceled nor answered."""
        if not charge_id.startswith("pi_"):
            raise ProcessorError("resource_missing", f"No such charge: {charge_id!r}")
        charge = same_charge(await self._intent(charge_id), request)
        if charge.status != ChargeStatus.REQUIRES_ACTION:
            return charge
        try:
            canceled = await self._client.v1.payment_intents.cancel_async(charge_id)
        except stripe.InvalidRequestError as exc:
            again = same_charge(await self._intent(charge_id), request)
            if again.status == ChargeStatus.REQUIRES_ACTION:
                _refused(exc)
            return again
        except stripe.StripeError as exc:
            _refused(exc)
        return same_charge(_plain(canceled), request)

    async def _intent(self, charge_id: str) -> dict[str, Any]:
        try:
            return _plain(await self._client.v1.payment_intents.retrieve_async(charge_id))
        except stripe.StripeError as exc:
            _refused(exc)

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        if amount_cents <= 0:
            raise ProcessorError("invalid_amount", "amount_cents must be a positive integer")
        if not idempotency_key:
            raise ProcessorError("invalid_request", "an idempotency key is required")
        if not charge_id.startswith("pi_"):
            raise ProcessorError("resource_missing", f"No such charge: {charge_id!r}")
        existing = await self._refund_by_key(charge_id, idempotency_key)
        if existing is not None:
            if int(existing["amount"]) != amount_cents:
                raise ProcessorError(
                    "idempotency_key_in_use", "this idempotency key was used for another refund"
                )
            return _refund(existing, charge_id)
        params: stripe.params.RefundCreateParams = {
            "payment_intent": charge_id,
            "amount": amount_cents,
            "metadata": {KEY_METADATA: idempotency_key},
        }
        try:
            refund = await self._client.v1.refunds.create_async(
                params, {"idempotency_key": f"zoopay-refund:{idempotency_key}"}
            )
        except stripe.StripeError as exc:
            _refused(exc)
        return _refund(_plain(refund), charge_id)

    async def _refund_by_key(self, charge_id: str, idempotency_key: str) -> dict[str, Any] | None:
        params: stripe.params.RefundListParams = {"payment_intent": charge_id, "limit": PAGE}
        try:
            page = await self._client.v1.refunds.list_async(params)
            async for refund in page.auto_paging_iter():
                data = _plain(refund)
                if (data.get("metadata") or {}).get(KEY_METADATA) == idempotency_key:
                    return data
        except stripe.StripeError as exc:
            _refused(exc)
        return None

    async def portal_url(self, customer_id: str, *, return_url: str) -> str:
        try:
            session = await self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        except stripe.StripeError as exc:
            _refused(exc)
        return session.url
