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
