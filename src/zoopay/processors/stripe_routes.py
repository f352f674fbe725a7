"""POST /processor/stripe/webhook: where Stripe delivers its events (an extension).

No bearer token: Stripe signs each delivery with the endpoint's secret, and only a payload
whose `Stripe-Signature` the SDK verifies is read (400 otherwise, and nothing is recorded).
"""

import logging
from typing import Annotated

from fastapi import Header, Request

from zoopay.api.deps import Engine, Now
from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.db.engine import transaction
from zoopay.invoicing.service import reconcile_pending_refunds, refund_stray_charges
from zoopay.processors.base import ProcessorError, ProcessorUnavailable
from zoopay.processors.stripe import StripeProcessor
from zoopay.processors.stripe_schemas import StripeEventReceipt
from zoopay.processors.stripe_webhooks import (
    CHARGE_EVENTS,
    REFUND_EVENT,
    SETUP_EVENT,
    Outcome,
    StripeEvent,
    record_stripe_event,
    verified_event,
)

log = logging.getLogger(__name__)
router = json_router(tags=["processors"])

# Stripe posts a JSON event; the schema says so, the signature decides.
_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Stripe event, exactly as Stripe signed it",
                }
            }
        },
    }
}


StripeSignature = Annotated[
    str,
    Header(
        alias="Stripe-Signature",
        description="`t=TIMESTAMP,v1=SIGNATURE`: Stripe's HMAC-SHA256 of `TIMESTAMP.BODY` with"
        " the endpoint's signing secret; older than five minutes is refused",
    ),
]


@router.post(
    "/processor/stripe/webhook",
    response_model=StripeEventReceipt,
    responses=errors(400, 409, 413, 415, 503),
    openapi_extra=_EVENT_BODY,
)
async def stripe_webhook(
    request: Request, engine: Engine, now: Now, stripe_signature: StripeSignature
) -> StripeEventReceipt:
    """Receive one Stripe event (signed with ZOOPAY_STRIPE_WEBHOOK_SECRET); each event id is
    applied once, a repeated delivery answers `duplicate`. A payment intent under an attempt's
    key that is not its charge (another amount, currency or customer) is a 409."""
    secret = request.app.state.stripe_webhook_secret
    event = verified_event(await request.body(), stripe_signature, secret)
    async with transaction(engine) as conn:
        outcome = await record_stripe_event(conn, event=event, now=now)
    if outcome != Outcome.DUPLICATE:
        await _follow_up(request.app.state.processor, engine, event, now)
    return StripeEventReceipt.of(event, outcome)


async def _follow_up(processor: object, engine: Engine, event: StripeEvent, now: Now) -> None:
    """What needs Stripe itself, after the event is committed (never inside a transaction). It
    is best effort: the reconcile job completes refunds anyway, and a default card can be set.
    A payment that succeeded for an invoice no longer open is refunded here."""
    if not isinstance(processor, StripeProcessor):
        return
    try:
        if event.type == REFUND_EVENT:
            await reconcile_pending_refunds(engine, processor, now=now)
        elif event.type in CHARGE_EVENTS:
            await refund_stray_charges(engine, processor, now=now)
        elif event.type == SETUP_EVENT:
            customer, method = event.object.get("customer"), event.object.get("payment_method")
            if isinstance(customer, str) and isinstance(method, str):
                await processor.adopt_default(customer, method)
    except (ProcessorError, ProcessorUnavailable) as exc:
        log.warning("stripe event %s (%s): follow-up failed: %s", event.id, event.type, exc)
