"""A payment processor inside zoopay, with Stripe's test-card semantics.

It keeps its own tables (`processor_*`) and behaves like an outside service: every call is its
own transaction on the engine, committed before it answers, so zoopay's database may roll back
after it and `find_charge` still tells what happened. Call it outside a write transaction of
your own: on SQLite a held write lock would make it wait (one writer at a time).

It takes Stripe's test payment-method tokens only (no card number ever reaches zoopay):

| token | brand, last4 | attach | a charge |
|---|---|---|---|
| pm_card_visa | visa 4242 | ok | succeeds |
| pm_card_mastercard | mastercard 4444 | ok | succeeds |
| pm_card_visa_chargeDeclined | visa 0002 | refused, `card_declined` | - |
| pm_card_chargeCustomerFail | visa 0341 | ok | fails, `card_declined` |
| pm_card_authenticationRequired | visa 3184 | ok | `requires_action` |

Stripe.js's part (confirming a setup intent with a card) is `confirm_setup_intent`, served at
`POST /processor/setup-intents/confirm` and by the console's card form; the card-management
page is the console's (zoopay.console.payments); a charge that waits for the customer is
answered by `authenticate_charge`, the bank's part.
"""

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy.exc
from sqlalchemy import RowMapping, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.db.bulk import insert_all, insert_new, select_by
from zoopay.db.engine import reading, transaction
from zoopay.db.tables import (
    processor_charges,
    processor_customers,
    processor_payment_methods,
    processor_refunds,
    processor_setup_intents,
)
from zoopay.processors.base import (
    Card,
    Charge,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    CustomerRequest,
    CustomerResult,
    ProcessorError,
    Refund,
    SetupIntent,
    check_same_charge,
)
from zoopay.records import record_of

Clock = Callable[[], datetime]

# Cards made from test tokens expire this many years after they are attached.
CARD_YEARS = 3
CURRENCIES = frozenset({"usd"})
DECLINED_MESSAGE = "Your card was declined."


@dataclass(frozen=True)
class TestCard:
    """What a Stripe test token stands for."""

    brand: str
    number: str
    # What happens: "ok", "declined_on_attach", "charge_fails", "requires_action".
    behaviour: str
    country: str = "US"
    funding: str = "credit"

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def fingerprint(self) -> str:
        # Stable per card number, as Stripe's is per number and account.
        return hashlib.sha256(f"zoopay-embedded:{self.number}".encode()).hexdigest()[:16]


TEST_CARDS: Mapping[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242424242424242", "ok"),
    "pm_card_mastercard": TestCard("mastercard", "5555555555554444", "ok"),
    "pm_card_visa_chargeDeclined": TestCard("visa", "4000000000000002", "declined_on_attach"),
    "pm_card_chargeCustomerFail": TestCard("visa", "4000000000000341", "charge_fails"),
    "pm_card_authenticationRequired": TestCard("visa", "4000002760003184", "requires_action"),
}


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _card(row: Mapping[Any, Any], default_id: str | None) -> Card:
    return record_of(Card, row, is_default=row["id"] == default_id)


def _charge(row: Mapping[Any, Any]) -> Charge:
    return record_of(Charge, row, status=ChargeStatus(row["status"]))


def _refund(row: Mapping[Any, Any]) -> Refund:
    return record_of(Refund, row)


def _invalid_charge(request: ChargeRequest) -> ProcessorError | None:
    """Why a charge request is refused before anything is looked at, if it is."""
    if request.amount_cents <= 0:
        return ProcessorError("invalid_amount", "amount_cents must be a positive integer")
    if request.currency not in CURRENCIES:
        return ProcessorError("invalid_currency", f"currency {request.currency!r} is not supported")
    if not request.idempotency_key:
        return ProcessorError("invalid_request", "an idempotency key is required")
    return None


async def _by_key(conn: AsyncConnection, table: Table, idempotency_key: str) -> RowMapping | None:
    """The charge or refund (by `table`) made with this idempotency key, if any."""
    query = select(table).where(table.c.idempotency_key == idempotency_key)
    return (await conn.execute(query)).mappings().first()


_DEFAULT = "default_payment_method_id"
_CUSTOMERS = select(processor_customers.c.id, processor_customers.c.default_payment_method_id)
_METHODS = select(
    processor_payment_methods.c.id,
    processor_payment_methods.c.customer_id,
    processor_payment_methods.c.token,
).where(processor_payment_methods.c.detached_at.is_(None))
_CHARGES = select(processor_charges)


def _chargeable(
    request: ChargeRequest,
    customers: Mapping[str, Mapping[str, Any]],
    methods: Mapping[str, Mapping[str, Any]],
) -> Mapping[str, Any] | ProcessorError:
    """The card a request charges (the one named, or the customer's default), or why none."""
    customer = customers.get(request.customer_id)
    if customer is None:
        return ProcessorError("resource_missing", f"No such customer: {request.customer_id!r}")
    method_id = request.payment_method_id or customer[_DEFAULT]
    if method_id is None:
        return ProcessorError(
            "no_payment_method", "the customer has no default payment method to charge"
        )
    method = methods.get(method_id)
    if method is None or method["customer_id"] != request.customer_id:
        return ProcessorError("resource_missing", f"No such payment method: {method_id!r}")
    return method


def _charge_values(
    request: ChargeRequest, method: Mapping[Any, Any], now: datetime
) -> dict[str, Any]:
    """The row of a new charge of `method`: its test card decides how it goes."""
    behaviour = TEST_CARDS[method["token"]].behaviour
    status, code, message = ChargeStatus.SUCCEEDED, None, None
    if behaviour == "charge_fails":
        status, code, message = ChargeStatus.FAILED, "card_declined", DECLINED_MESSAGE
    elif behaviour == "requires_action":
        status, code = ChargeStatus.REQUIRES_ACTION, "authentication_required"
        message = "This payment requires the customer to authenticate."
    return {
        "id": _new_id("pi"),
        "idempotency_key": request.idempotency_key,
        "customer_id": request.customer_id,
        "payment_method_id": method["id"],
        "amount_cents": request.amount_cents,
        "currency": request.currency,
        "description": request.description,
        "status": status.value,
        "failure_code": code,
        "failure_message": message,
        "created_at": now,
    }


@dataclass(frozen=True)
class PortalSession:
    """An open card-management page: whose cards, its secret, where "back" leads."""

    customer_id: str
    secret: str
    return_url: str


class EmbeddedProcessor:
    name = "embedded"

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    # -- customers

    async def create_customer(
        self, *, email: str, name: str | None, metadata: dict[str, str]
    ) -> str:
        customer_id = _new_id("cus")
        now = self._clock()
        async with transaction(self._engine) as conn:
            await conn.execute(
                insert(processor_customers).values(
                    id=customer_id,
                    email=email,
                    name=name,
                    metadata=json.dumps(metadata, sort_keys=True),
                    created_at=now,
                    updated_at=now,
                )
            )
        return customer_id

    async def create_customers(self, requests: Sequence[CustomerRequest]) -> list[CustomerResult]:
        """`create_customer` for a batch: one statement in one transaction, whatever its size."""
        now = self._clock()
        ids = [_new_id("cus") for _ in requests]
        rows = [
            {
                "id": customer_id,
                "email": request.email,
                "name": request.name,
                "metadata": json.dumps(request.metadata, sort_keys=True),
                "created_at": now,
                "updated_at": now,
            }
            for customer_id, request in zip(ids, requests, strict=True)
        ]
        async with transaction(self._engine) as conn:
            await insert_all(conn, processor_customers, rows)
        return list(ids)

    async def update_customer(self, customer_id: str, *, email: str, name: str | None) -> None:
        async with transaction(self._engine) as conn:
            result = await conn.execute(
                update(processor_customers)
                .where(processor_customers.c.id == customer_id)
                .values(email=email, name=name, updated_at=self._clock())
            )
            if result.rowcount == 0:
                raise ProcessorError("resource_missing", f"No such customer: {customer_id!r}")

    async def _customer(self, conn: AsyncConnection, customer_id: str) -> RowMapping:
        row = (
            (
                await conn.execute(
                    select(processor_customers).where(processor_customers.c.id == customer_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ProcessorError("resource_missing", f"No such customer: {customer_id!r}")
        return row

    # -- setup intents and payment methods

    async def create_setup_intent(self, customer_id: str) -> SetupIntent:
        intent_id = _new_id("seti")
        client_secret = f"{intent_id}_secret_{secrets.token_urlsafe(24)}"
        async with transaction(self._engine) as conn:
            await self._customer(conn, customer_id)
            await conn.execute(
                insert(processor_setup_intents).values(
                    id=intent_id,
                    customer_id=customer_id,
                    secret_hash=secret_hash(client_secret),
                    status="requires_payment_method",
                    created_at=self._clock(),
                )
            )
        return SetupIntent(id=intent_id, client_secret=client_secret)

    async def confirm_setup_intent(self, client_secret: str, payment_method: str) -> Card:
        """Stripe.js's confirmCardSetup: attach the test card to the intent's customer, once.

        ProcessorError `resource_missing` for a secret that was never issued, and
        `setup_intent_unexpected_state` for one already used; `card_declined` for a card that
        is refused (nothing attached, the intent may be confirmed again, as with Stripe);
        `invalid_payment_method` for a token that is not one of the test cards."""
        card = TEST_CARDS.get(payment_method)
        now = self._clock()
        async with transaction(self._engine) as conn:
            intent = (
                (
                    await conn.execute(
                        select(processor_setup_intents)
                        .where(processor_setup_intents.c.secret_hash == secret_hash(client_secret))
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if intent is None:
                raise ProcessorError("resource_missing", "No such setup intent")
            if intent["status"] != "requires_payment_method":
                raise ProcessorError(
                    "setup_intent_unexpected_state",
                    "This setup intent was already confirmed: create a new one",
                )
            if card is None:
                raise ProcessorError(
                    "invalid_payment_method",
                    "payment_method must be one of the test tokens: " + ", ".join(TEST_CARDS),
                )
            if card.behaviour == "declined_on_attach":
                raise ProcessorError("card_declined", DECLINED_MESSAGE)
            method_id = await self._attach(conn, intent["customer_id"], payment_method, card, now)
            await conn.execute(
                update(processor_setup_intents)
                .where(processor_setup_intents.c.id == intent["id"])
                .values(status="succeeded", payment_method_id=method_id, confirmed_at=now)
            )
            customer = await self._customer(conn, intent["customer_id"])
            row = await self._method_row(conn, intent["customer_id"], method_id)
            return _card(row, customer["default_payment_method_id"])

    async def _attach(
        self,
        conn: AsyncConnection,
        customer_id: str,
        token: str,
        card: TestCard,
        now: datetime,
    ) -> str:
        method_id = _new_id("pm")
        await conn.execute(
            insert(processor_payment_methods).values(
                id=method_id,
                customer_id=customer_id,
                token=token,
                brand=card.brand,
                last4=card.last4,
                exp_month=12,
                exp_year=now.year + CARD_YEARS,
                country=card.country,
                funding=card.funding,
                fingerprint=card.fingerprint,
                created_at=now,
            )
        )
        # The first card becomes the default, as the customer would expect to be charged on it.
        await conn.execute(
            update(processor_customers)
            .where(
                processor_customers.c.id == customer_id,
                processor_customers.c.default_payment_method_id.is_(None),
            )
            .values(default_payment_method_id=method_id, updated_at=now)
        )
        return method_id

    async def _method_row(
        self, conn: AsyncConnection, customer_id: str, method_id: str
    ) -> RowMapping:
        row = (
            (
                await conn.execute(
                    select(processor_payment_methods).where(
                        processor_payment_methods.c.id == method_id,
                        processor_payment_methods.c.customer_id == customer_id,
                        processor_payment_methods.c.detached_at.is_(None),
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ProcessorError("resource_missing", f"No such payment method: {method_id!r}")
        return row

    async def list_payment_methods(self, customer_id: str) -> list[Card]:
        async with reading(self._engine) as conn:
            customer = await self._customer(conn, customer_id)
            rows = (
                (
                    await conn.execute(
                        select(processor_payment_methods)
                        .where(
                            processor_payment_methods.c.customer_id == customer_id,
                            processor_payment_methods.c.detached_at.is_(None),
                        )
                        .order_by(
                            processor_payment_methods.c.created_at.desc(),
                            processor_payment_methods.c.id.desc(),
                        )
                    )
                )
                .mappings()
                .all()
            )
        cards = [_card(row, customer["default_payment_method_id"]) for row in rows]
        # The default first, then newest first (a stable sort keeps the newest-first order).
        return sorted(cards, key=lambda card: not card.is_default)

    async def default_payment_method(self, customer_id: str) -> str | None:
        async with reading(self._engine) as conn:
            customer = await self._customer(conn, customer_id)
        default: str | None = customer["default_payment_method_id"]
        return default

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        async with transaction(self._engine) as conn:
            await self._method_row(conn, customer_id, payment_method_id)
            await conn.execute(
                update(processor_customers)
                .where(processor_customers.c.id == customer_id)
                .values(default_payment_method_id=payment_method_id, updated_at=self._clock())
            )

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        now = self._clock()
        async with transaction(self._engine) as conn:
            await self._method_row(conn, customer_id, payment_method_id)
            await conn.execute(
                update(processor_payment_methods)
                .where(processor_payment_methods.c.id == payment_method_id)
                .values(detached_at=now)
            )
            # As with Stripe: detaching the default leaves the customer without one.
            await conn.execute(
                update(processor_customers)
                .where(
                    processor_customers.c.id == customer_id,
                    processor_customers.c.default_payment_method_id == payment_method_id,
                )
                .values(default_payment_method_id=None, updated_at=now)
            )

    # -- charges and refunds

    async def charge(self, request: ChargeRequest) -> Charge:
        invalid = _invalid_charge(request)
        if invalid is not None:
            raise invalid
        try:
            async with transaction(self._engine) as conn:
                existing = await _by_key(conn, processor_charges, request.idempotency_key)
                if existing is not None:
                    return self._same_charge(existing, request)
                return await self._new_charge(conn, request)
        except sqlalchemy.exc.IntegrityError:
            # Another call with the same key committed first: answer what it did.
            async with reading(self._engine) as conn:
                existing = await _by_key(conn, processor_charges, request.idempotency_key)
            if existing is None:
                raise
            return self._same_charge(existing, request)

    @staticmethod
    def _same_charge(row: Mapping[Any, Any], request: ChargeRequest) -> Charge:
        check_same_charge(
            request,
            customer_id=row["customer_id"],
            amount_cents=row["amount_cents"],
            currency=row["currency"],
        )
        return _charge(row)

    async def _new_charge(self, conn: AsyncConnection, request: ChargeRequest) -> Charge:
        customer = await self._customer(conn, request.customer_id)
        method_id = request.payment_method_id or customer["default_payment_method_id"]
        if method_id is None:
            raise ProcessorError(
                "no_payment_method", "the customer has no default payment method to charge"
            )
        method = await self._method_row(conn, request.customer_id, method_id)
        values = _charge_values(request, method, self._clock())
        await conn.execute(insert(processor_charges).values(**values))
        return _charge(values)

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeResult]:
        """`charge` for a batch, set-based: one transaction of four statements (the keys
        seen before, the customers, their cards, the new charges), whatever its size. A key
        given twice in the batch is charged once, as a retry would be."""
        first: dict[str, int] = {}
        for i, request in enumerate(requests):
            first.setdefault(request.idempotency_key, i)
        results: dict[int, ChargeResult] = {}
        valid = []
        for i in sorted(first.values()):
            request = requests[i]
            invalid = _invalid_charge(request)
            if invalid is None:
                valid.append(i)
            else:
                results[i] = invalid
        if valid:
            async with transaction(self._engine) as conn:
                new = await self._charge_batch(conn, requests, valid, results)
                inserted = await insert_new(conn, processor_charges, [row for _, row in new])
                # A key not inserted was charged by a concurrent call meanwhile: its answer.
                raced = [i for i, row in new if row["id"] not in inserted]
                keys = [requests[i].idempotency_key for i in raced]
                earlier = await self._charges_by_key(conn, keys)
            results.update((i, _charge(row)) for i, row in new)
            for i in raced:
                request = requests[i]
                results[i] = self._same_or_refused(earlier[request.idempotency_key], request)
        return [self._answer(results, requests, first, request) for request in requests]

    @staticmethod
    def _answer(
        results: dict[int, ChargeResult],
        requests: Sequence[ChargeRequest],
        first: dict[str, int],
        request: ChargeRequest,
    ) -> ChargeResult:
        """A request's result: its key's first request's, if that charged the same (the first
        request's customer, whose charge it is)."""
        i = first[request.idempotency_key]
        answer = results[i]
        if isinstance(answer, Charge):
            try:
                check_same_charge(
                    request,
                    customer_id=requests[i].customer_id,
                    amount_cents=answer.amount_cents,
                    currency=answer.currency,
                )
            except ProcessorError as exc:
                return exc
        return answer

    async def _charge_batch(
        self,
        conn: AsyncConnection,
        requests: Sequence[ChargeRequest],
        valid: list[int],
        results: dict[int, ChargeResult],
    ) -> list[tuple[int, dict[str, Any]]]:
        """The rows of the batch's new charges, by request index; the answers of keys seen
        before and the refusals are put in `results`."""
        existing = await self._charges_by_key(conn, [requests[i].idempotency_key for i in valid])
        customers = await select_by(
            conn,
            _CUSTOMERS,
            processor_customers.c.id,
            sorted({requests[i].customer_id for i in valid}),
        )
        wanted = {
            requests[i].payment_method_id or customers[requests[i].customer_id][_DEFAULT]
            for i in valid
            if requests[i].customer_id in customers
        }
        methods = await select_by(
            conn, _METHODS, processor_payment_methods.c.id, sorted(m for m in wanted if m)
        )
        new: list[tuple[int, dict[str, Any]]] = []
        now = self._clock()
        for i in valid:
            request = requests[i]
            if request.idempotency_key in existing:
                results[i] = self._same_or_refused(existing[request.idempotency_key], request)
                continue
            found = _chargeable(request, customers, methods)
            if isinstance(found, ProcessorError):
                results[i] = found
            else:
                new.append((i, _charge_values(request, found, now)))
        return new

    async def _charges_by_key(
        self, conn: AsyncConnection, keys: Sequence[str]
    ) -> dict[str, Mapping[str, Any]]:
        column = processor_charges.c.idempotency_key
        return await select_by(conn, _CHARGES, column, sorted(set(keys)))

    @classmethod
    def _same_or_refused(cls, row: Mapping[Any, Any], request: ChargeRequest) -> ChargeResult:
        try:
            return cls._same_charge(row, request)
        except ProcessorError as exc:
            return exc

    async def find_charge(self, request: ChargeRequest) -> Charge | None:
        async with reading(self._engine) as conn:
            row = await _by_key(conn, processor_charges, request.idempotency_key)
        return None if row is None else self._same_charge(row, request)

    async def cancel_charge(self, charge_id: str, *, request: ChargeRequest) -> Charge:
        async with reading(self._engine) as conn:
            query = select(processor_charges).where(processor_charges.c.id == charge_id)
            row = (await conn.execute(query)).mappings().first()
        if row is not None:
            self._same_charge(row, request)  # another's charge is not canceled
        return await self._finish_waiting(charge_id, ChargeStatus.CANCELED, "canceled")

    async def authenticate_charge(self, charge_id: str, *, approved: bool = True) -> Charge:
        """What the customer's bank answers when they authenticate a charge that waits for them
        (3-D Secure, which Stripe.js shows them): it succeeds, or fails. As with Stripe, nothing
        tells zoopay at once (the embedded processor sends no webhooks): zoopay learns it when
        it asks, before the invoice's next attempt and in `zoopay billing run`."""
        if approved:
            return await self._finish_waiting(charge_id, ChargeStatus.SUCCEEDED, None)
        return await self._finish_waiting(charge_id, ChargeStatus.FAILED, "authentication_failed")

    async def _finish_waiting(
        self, charge_id: str, status: ChargeStatus, code: str | None
    ) -> Charge:
        """A charge that waits for the customer moves to `status`, once; any other is answered
        as it is."""
        message = {
            "canceled": "The payment was canceled before the customer authenticated it.",
            "authentication_failed": "The customer's bank refused the authentication.",
        }.get(code or "")
        async with transaction(self._engine) as conn:
            await conn.execute(
                update(processor_charges)
                .where(
                    processor_charges.c.id == charge_id,
                    processor_charges.c.status == ChargeStatus.REQUIRES_ACTION.value,
                )
                .values(status=status.value, failure_code=code, failure_message=message)
            )
            query = select(processor_charges).where(processor_charges.c.id == charge_id)
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise ProcessorError("resource_missing", f"No such charge: {charge_id!r}")
        return _charge(row)

    async def refund(self, charge_id: str, *, amount_cents: int, idempotency_key: str) -> Refund:
        if amount_cents <= 0:
            raise ProcessorError("invalid_amount", "amount_cents must be a positive integer")
        try:
            async with transaction(self._engine) as conn:
                existing = await _by_key(conn, processor_refunds, idempotency_key)
                if existing is not None:
                    return self._same_refund(existing, charge_id, amount_cents)
                return await self._new_refund(conn, charge_id, amount_cents, idempotency_key)
        except sqlalchemy.exc.IntegrityError:
            async with reading(self._engine) as conn:
                existing = await _by_key(conn, processor_refunds, idempotency_key)
            if existing is None:
                raise
            return self._same_refund(existing, charge_id, amount_cents)

    @staticmethod
    def _same_refund(row: RowMapping, charge_id: str, amount_cents: int) -> Refund:
        if (row["charge_id"], row["amount_cents"]) != (charge_id, amount_cents):
            raise ProcessorError(
                "idempotency_key_in_use", "this idempotency key was used for another refund"
            )
        return _refund(row)

    async def _new_refund(
        self, conn: AsyncConnection, charge_id: str, amount_cents: int, idempotency_key: str
    ) -> Refund:
        charge = (
            (
                await conn.execute(
                    select(processor_charges)
                    .where(processor_charges.c.id == charge_id)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if charge is None:
            raise ProcessorError("resource_missing", f"No such charge: {charge_id!r}")
        if charge["status"] != ChargeStatus.SUCCEEDED:
            raise ProcessorError("charge_not_refundable", "only a succeeded charge is refunded")
        refunded = (
            await conn.execute(
                select(func.coalesce(func.sum(processor_refunds.c.amount_cents), 0)).where(
                    processor_refunds.c.charge_id == charge_id
                )
            )
        ).scalar_one()
        if int(refunded) + amount_cents > charge["amount_cents"]:
            raise ProcessorError(
                "amount_too_large",
                f"refunds would exceed the charge: {charge['amount_cents']} cents charged, "
                f"{refunded} refunded already",
            )
        values = {
            "id": _new_id("re"),
            "idempotency_key": idempotency_key,
            "charge_id": charge_id,
            "amount_cents": amount_cents,
            "status": "succeeded",
            "created_at": self._clock(),
        }
        await conn.execute(insert(processor_refunds).values(**values))
        return _refund(values)

    # -- the card-management page

    async def portal_url(self, customer_id: str, *, return_url: str) -> str | None:
        """None: the embedded processor has no page of its own; zoopay's console is the
        customer's card page (`/user/payment/method-portal-link` signs them in to it)."""
        return None

    async def attach_test_card(self, customer_id: str, payment_method: str) -> Card:
        """A card added at once: a setup intent confirmed with a test token, as Stripe.js
        would (the tests' shortcut)."""
        intent = await self.create_setup_intent(customer_id)
        return await self.confirm_setup_intent(intent.client_secret, payment_method)
