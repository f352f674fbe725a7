"""Signing in to the console and using its forms, as a browser does."""

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person
from zoopay.console import service as console
from zoopay.db.engine import transaction

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def link_for(engine: AsyncEngine, person: Person, clock: Clock) -> str:
    async with transaction(engine) as conn:
        link = await console.create_link(conn, user=person.user, created_by="test", now=clock.now)
    return link.secret


async def sign_in(
    client: httpx.AsyncClient, engine: AsyncEngine, person: Person, clock: Clock
) -> str:
    """Sign `person` in by link; the page's CSRF token."""
    client.cookies.clear()
    secret = await link_for(engine, person, clock)
    page = await client.get("/console/link", params={"secret": secret})
    assert page.status_code == 200 and secret in page.text
    response = await client.post("/console/link", data={"secret": secret}, headers=FORM)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    return await csrf_of(client)


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/user/")
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match is not None
    return match.group(1)


SECRET = re.compile(r'name="client_secret" value="([^"]+)"')


async def add_card_by_form(
    client: httpx.AsyncClient, csrf: str, card: str, kind: str = "user"
) -> httpx.Response:
    form = await client.post(f"/console/{kind}/billing/card", data={"csrf": csrf}, headers=FORM)
    assert form.status_code == 200, form.text
    assert 'value="pm_card_visa"' in form.text
    match = SECRET.search(form.text)
    assert match is not None
    return await client.post(
        f"/console/{kind}/billing/card/confirm",
        data={"csrf": csrf, "client_secret": match.group(1), "card": card},
        headers=FORM,
    )
