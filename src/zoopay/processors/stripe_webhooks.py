"""Stripe's webhook events, each recorded once by its id and applied through invoicing.

Stripe delivers an event at least once (and again until it gets a 2xx), in any order. The
event's id is the key of `stripe_events`: the first delivery records it and applies it in the
same transaction, a repeated one finds it recorded and changes nothing.

What is applied:
- `payment_intent.succeeded`, `payment_intent.payment_failed`, `payment_intent.canceled`: the
  payment intent carries the charge's idempotency key in its metadata, which names the
  invoice's payment attempt; an attempt still pending (zoopay crashed, or Stripe did not answer,
  before the answer was committed) or waiting for the customer (`requires_action`: they have
  now authenticated it, or failed to) gets the answer through `invoicing.apply_charge`, which
  settles an open (or uncollectible) invoice, or, for one paid otherwise or void, marks the money
  to be refunded (the
  route's follow-up refunds it: `invoicing.refund_stray_charges`).
- `charge.refunded`: refunds that zoopay left pending are completed
  (`invoicing.reconcile_pending_refunds`, which asks Stripe again by each refund's key).
- `setup_intent.succeeded`: a card the customer added through Stripe.js becomes their default if
  they have none (as the embedded processor makes the first card the default).
Anything else is recorded and acknowledged.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.tables import stripe_events
from zoopay.errors import BadRequest, Conflict, quoted
from zoopay.invoicing.service import (
    CURRENCY,
    apply_charge,
    asked_of,
    attempt_by_key,
    takes_answer,
)
from zoopay.payments.service import insert_unless_present
from zoopay.processors.base import ProcessorError, ProcessorUnavailable
from zoopay.processors.stripe import KEY_METADATA, same_charge

CHARGE_EVENTS = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"}
)
REFUND_EVENT = "charge.refunded"
SETUP_EVENT = "setup_intent.succeeded"


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # it changed an invoice
    RECORDED = "recorded"  # nothing of zoopay's was waiting for it
    DUPLICATE = "duplicate"  # delivered before: nothing done this time


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    object: Mapping[str, Any]

    @property
    def object_id(self) -> str | None:
        value = self.object.get("id")
        return value[:255] if isinstance(value, str) else None  # its column's width


def verified_event(payload: bytes, signature: str | None, secret: str | None) -> StripeEvent:
    """The event, if Stripe signed this exact payload with the endpoint's secret (the SDK's
    check, which also refuses a signature older than five minutes); BadRequest otherwise."""
    if not secret:
        raise BadRequest("Stripe webhooks are not configured here (ZOOPAY_STRIPE_WEBHOOK_SECRET)")
    if not signature:
        raise BadRequest("the Stripe-Signature header is missing")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError:
        raise BadRequest("the Stripe-Signature header does not match the payload") from None
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        # A malformed signature header or a payload that is no JSON event (the SDK reads a
        # JSON array, string or null as if it were an object).
        raise BadRequest("this is not a signed Stripe event") from None
    data = event.to_dict()
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not _is_stripe_text(data.get("id")) or not _is_stripe_text(data.get("type")):
        raise BadRequest("a Stripe event has an id and a type")
    if not isinstance(obj, dict):
        raise BadRequest("a Stripe event has data.object")
    if "id" in obj and not _is_stripe_text(obj["id"]):
        raise BadRequest("a Stripe event's data.object has a Stripe id")
    return StripeEvent(id=data["id"][:255], type=data["type"][:100], object=obj)


def _is_stripe_text(value: object) -> bool:
    """Stripe's ids and event types are printable ASCII: neither NUL (which PostgreSQL text
    cannot hold) nor a lone surrogate (which no database encodes) is stored from an event."""
    return isinstance(value, str) and value.isascii() and value.isprintable()


async def record_stripe_event(
    conn: AsyncConnection, *, event: StripeEvent, now: datetime
) -> Outcome:
    """Record the event and apply it, in the caller's transaction; a repeated delivery is
    DUPLICATE and changes nothing (a concurrent one waits on the first's row, then finds it)."""
    inserted = await insert_unless_present(
        conn,
        stripe_events,
        {
            "id": event.id,
            "type": event.type,
            "object_id": event.object_id,
            "outcome": Outcome.RECORDED.value,
            "received_at": now,
        },
    )
    if not inserted:
        return Outcome.DUPLICATE
    outcome = Outcome.RECORDED
    if event.type in CHARGE_EVENTS:
        outcome = await _apply_intent(conn, event.object, now)
    if outcome != Outcome.RECORDED:
        await conn.execute(
            stripe_events.update()
            .where(stripe_events.c.id == event.id)
            .values(outcome=outcome.value)
        )
    return outcome


async def _apply_intent(conn: AsyncConnection, intent: Mapping[str, Any], now: datetime) -> Outcome:
    metadata = intent.get("metadata")
    key = metadata.get(KEY_METADATA) if isinstance(metadata, Mapping) else None
    if not isinstance(key, str):
        return Outcome.RECORDED  # not a charge zoopay made
    attempt = await attempt_by_key(conn, idempotency_key=key)
    if attempt is None:
        return Outcome.RECORDED
    try:
        # An intent under the attempt's key that is not its charge (another currency, customer
        # or amount) pays nothing, as reconcile and a retried charge refuse it.
        charge = same_charge(intent, asked_of(attempt))
    except ProcessorError:
        raise Conflict(
            f"payment intent {quoted(intent.get('id'))} is not the charge of attempt"
            f" {attempt.id}: {attempt.amount_cents} cents in {CURRENCY} from"
            f" {attempt.processor_customer_id}"
        ) from None
    except ProcessorUnavailable:
        return Outcome.RECORDED  # still processing: a later event tells the end
    except (KeyError, TypeError, ValueError, AttributeError):
        # AttributeError: a field that should be an object (last_payment_error) is not.
        raise BadRequest("the event's payment intent lacks its amount or status") from None
    if not takes_answer(attempt.status, charge.status):
        return Outcome.RECORDED
    applied = await apply_charge(conn, attempt_id=attempt.id, charge=charge, now=now)
    return Outcome.RECORDED if applied.status == attempt.status else Outcome.APPLIED
