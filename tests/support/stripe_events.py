"""Stripe webhook deliveries as Stripe makes them: a JSON event and its `Stripe-Signature`
(`t=TIMESTAMP,v1=HMAC-SHA256(secret, "TIMESTAMP.PAYLOAD")`, Stripe's documented scheme); a
customer with a card at Stripe (localstripe), and a payment intent as Stripe sends it."""

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from zoopay.processors.stripe import StripeProcessor

WEBHOOK = "/processor/stripe/webhook"
WEBHOOK_SECRET = "whsec_zoopay_test"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()


def signature(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def delivery(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, Any]:
    """httpx.post keyword arguments that deliver `payload` as Stripe would."""
    return {
        "content": payload,
        "headers": {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature(payload, secret, at),
        },
    }


async def stripe_customer_with_card(processor: StripeProcessor, number: str) -> str:
    customer_id = await processor.create_customer(email="a@example.com", name=None, metadata={})
    method = await processor.client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    await processor.client.v1.payment_methods.attach_async(method.id, {"customer": customer_id})
    await processor.set_default_payment_method(customer_id, method.id)
    return customer_id


async def intent_as_stripe_sends_it(processor: StripeProcessor, intent_id: str) -> dict[str, Any]:
    intent = await processor.client.v1.payment_intents.retrieve_async(intent_id)
    return intent.to_dict()
