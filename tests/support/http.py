"""Talking to the API from a test."""

from typing import Any

import httpx


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, response.text
    return response.json()


def shown(secret: str) -> str:
    """How every answer but its creation shows a token."""
    return f"zoo_...{secret[-4:]}"


def add_card(http: httpx.Client, headers: dict[str, str], base: str = "/user") -> str:
    """A `pm_card_visa` on file for the caller (`/user`) or their org (`/org`), as a customer
    adds one: a setup intent, confirmed as Stripe.js would confirm it. Answers the card's id."""
    intent = http.post(f"{base}/payment/intent", headers=headers)
    assert intent.status_code == 201, intent.text
    confirmed = http.post(
        "/processor/setup-intents/confirm",
        json={"client_secret": intent.json()["client_secret"], "payment_method": "pm_card_visa"},
    )
    assert confirmed.status_code == 200, confirmed.text
    card_id: str = confirmed.json()["id"]
    return card_id
