"""localstripe delivers its own signed webhooks to a live `zoopay serve` running the `stripe`
processor: zoopay verifies localstripe's signatures (Stripe's scheme, made by another
implementation than the tests'), records each event once, and refuses a delivery signed with
another secret."""

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import serving
from tests.support.localstripe import API_KEY, localstripe
from tests.support.stripe_events import WEBHOOK_SECRET
from zoopay.db.engine import reading
from zoopay.db.tables import stripe_events
from zoopay.processors.base import ChargeRequest, ChargeStatus
from zoopay.processors.stripe import StripeConfig, StripeProcessor

DELIVERY_LIMIT_SECONDS = 30


async def events_about(engine: AsyncEngine, object_id: str) -> list[tuple[str, str]]:
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(stripe_events.c.type, stripe_events.c.outcome).where(
                stripe_events.c.object_id == object_id
            )
        )
        return sorted((row.type, row.outcome) for row in rows)


async def wait_for_event(engine: AsyncEngine, object_id: str, event_type: str) -> None:
    deadline = time.monotonic() + DELIVERY_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if any(kind == event_type for kind, _ in await events_about(engine, object_id)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event_type} for {object_id} in {DELIVERY_LIMIT_SECONDS}s")


async def test_localstripe_webhooks_are_verified_and_recorded_once(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    with localstripe(tmp_path / "localstripe.log") as stripe_url:
        settings = {
            "ZOOPAY_PROCESSOR": "stripe",
            "ZOOPAY_STRIPE_API_KEY": API_KEY,
            "ZOOPAY_STRIPE_API_BASE": stripe_url,
            "ZOOPAY_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ZOOPAY_ACCESS_LOG": "true",
        }
        with serving(database_url, tmp_path / "zoopay.log", **settings) as live:
            webhook = f"{live.base_url}/processor/stripe/webhook"
            async with httpx.AsyncClient(base_url=stripe_url) as config:
                for name, secret in (("zoopay", WEBHOOK_SECRET), ("forger", "whsec_forged")):
                    answer = await config.post(
                        f"/_config/webhooks/{name}", json={"url": webhook, "secret": secret}
                    )
                    assert answer.status_code == 200, answer.text

            processor = StripeProcessor(StripeConfig(api_key=API_KEY, api_base=stripe_url))
            try:
                customer_id = await processor.create_customer(
                    email="live@example.com", name="Live", metadata={}
                )
                intent = await processor.create_setup_intent(customer_id)
                confirmed = await processor.client.v1.setup_intents.confirm_async(
                    intent.id, {"payment_method": "pm_card_visa"}
                )
                assert isinstance(confirmed.payment_method, str)
                await processor.client.v1.payment_methods.attach_async(
                    confirmed.payment_method, {"customer": customer_id}
                )
                await processor.set_default_payment_method(customer_id, confirmed.payment_method)
                charge = await processor.charge(
                    ChargeRequest(
                        customer_id,
                        amount_cents=4200,
                        currency="usd",
                        idempotency_key=f"live-{customer_id}",
                        description="live",
                    )
                )
            finally:
                await processor.aclose()
            assert charge.status == ChargeStatus.SUCCEEDED

            await wait_for_event(engine, charge.id, "payment_intent.succeeded")
            await wait_for_event(engine, customer_id, "customer.created")
            # Each event once, though two endpoints got it: the forged delivery was refused.
            assert await events_about(engine, charge.id) == [
                ("payment_intent.succeeded", "recorded")
            ]
            created = await events_about(engine, customer_id)
            assert created.count(("customer.created", "recorded")) == 1
        log = (tmp_path / "zoopay.log").read_text()
        # localstripe delivered to both endpoints: zoopay took its own and refused the forger's.
        assert '"POST /processor/stripe/webhook HTTP/1.1" 200' in log
        assert '"POST /processor/stripe/webhook HTTP/1.1" 400' in log
