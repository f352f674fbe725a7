"""The console in-process: signing in (links once, sessions that expire), CSRF, and the API's
authorization rules on every page (another customer's ids, members and admins, staff)."""

import html
import re
import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, World, app_client
from tests.support.billing import staff_plan, with_card
from tests.support.console import FORM, csrf_of, link_for, sign_in
from tests.support.database import dump
from tests.support.errors import assert_error
from tests.support.http import bearer, ok
from tests.support.metering import SERVICE_TOKEN_ID, report
from zoopay.accounts import service as accounts
from zoopay.app import create_app
from zoopay.catalog.schemas import TierName
from zoopay.catalog.service import Catalog
from zoopay.config import Settings
from zoopay.db.engine import transaction
from zoopay.db.tables import billing_credits, console_links, console_sessions, ledger_entries
from zoopay.metering.service import Reported, record_calls
from zoopay.payments.service import Address, BillingDetails, save_billing_info

# --- signing in --------------------------------------------------------------------------------


async def test_a_link_signs_in_once(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    secret = await link_for(engine, alice, clock)
    first = await client.post("/console/link", data={"secret": secret}, headers=FORM)
    assert first.status_code == 303
    page = await client.get("/console/user/")
    assert page.status_code == 200 and alice.email in page.text
    client.cookies.clear()
    again = await client.post("/console/link", data={"secret": secret}, headers=FORM)
    assert again.status_code == 401 and "used already or has expired" in again.text
    assert "set-cookie" not in again.headers
    # Only hashes are stored.
    async with engine.connect() as conn:
        hashes = [r.secret_hash for r in (await conn.execute(select(console_links))).all()]
        session_hashes = (await conn.execute(select(console_sessions.c.secret_hash))).scalars()
        assert secret not in hashes and len(hashes) == 1
        assert all(len(h) == 64 for h in session_hashes)


async def test_a_link_expires_after_15_minutes(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    secret = await link_for(engine, alice, clock)
    clock.advance(minutes=15)
    response = await client.post("/console/link", data={"secret": secret}, headers=FORM)
    assert response.status_code == 401
    assert (await client.get("/console/user/")).status_code == 401
    fresh = await link_for(engine, alice, clock)
    clock.advance(minutes=14)
    ok_now = await client.post("/console/link", data={"secret": fresh}, headers=FORM)
    assert ok_now.status_code == 303


async def test_opening_a_link_does_not_spend_it(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    secret = await link_for(engine, alice, clock)
    for _ in range(3):  # a mail scanner fetching the URL
        page = await client.get("/console/link", params={"secret": secret})
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "same-origin"
    assert (
        await client.post("/console/link", data={"secret": secret}, headers=FORM)
    ).status_code == 303


async def test_sessions_expire_and_sign_out_ends_them(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    cookie = client.cookies.get("zoopay_console")
    assert cookie
    out = await client.post("/console/sign-out", data={"csrf": csrf}, headers=FORM)
    assert out.status_code == 303
    client.cookies.set("zoopay_console", cookie)  # a copied cookie is dead too
    assert (await client.get("/console/user/")).status_code == 401
    await sign_in(client, engine, alice, clock)
    clock.advance(hours=7, minutes=59)
    assert (await client.get("/console/user/")).status_code == 200
    clock.advance(minutes=1)
    page = await client.get("/console/user/")
    assert page.status_code == 401 and "Sign in" in page.text


async def test_signing_in_with_a_token_lasts_while_the_token_is_valid(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    response = await client.post("/console/sign-in", data={"token": alice.token}, headers=FORM)
    assert response.status_code == 303
    assert (await client.get("/console/user/")).status_code == 200
    bad = await client.post("/console/sign-in", data={"token": "zoo_nope"}, headers=FORM)
    assert bad.status_code == 401
    async with transaction(engine) as conn:
        principal = await accounts.authenticate(conn, token=alice.token)
        assert principal is not None
        await accounts.revoke_token(conn, token_id=principal.token_id, now=clock.now)
    assert (await client.get("/console/user/")).status_code == 401


async def test_a_service_token_cannot_sign_in(
    client: httpx.AsyncClient, engine: AsyncEngine, clock: Clock
) -> None:
    async with transaction(engine) as conn:
        token = await accounts.create_service_token(conn, service_name="product", now=clock.now)
    response = await client.post("/console/sign-in", data={"token": token}, headers=FORM)
    assert response.status_code == 400 and "set-cookie" not in response.headers


# --- the sign-in link API ----------------------------------------------------------------------


async def test_staff_and_services_create_links_others_may_not(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    async with transaction(engine) as conn:
        service_token = await accounts.create_service_token(
            conn, service_name="product", now=clock.now
        )
    for token in (staff.token, service_token):
        body = await ok(
            await client.post("/console/links", json={"email": alice.email}, headers=bearer(token)),
            201,
        )
        assert set(body) == {"url", "expires_at"}
        assert body["url"].startswith("http://zoopay.test/console/link?secret=zcl_")
        secret = body["url"].split("secret=")[1]
        client.cookies.clear()
        signed = await client.post("/console/link", data={"secret": secret}, headers=FORM)
        assert signed.status_code == 303
        assert alice.email in (await client.get("/console/user/")).text
    refused = await client.post(
        "/console/links", json={"email": staff.email}, headers=bearer(alice.token)
    )
    assert_error(refused, 403)
    unknown = await client.post(
        "/console/links", json={"email": "nobody@example.com"}, headers=bearer(staff.token)
    )
    assert_error(unknown, 404)
    assert_error(await client.post("/console/links", json={"email": alice.email}), 401)
    extra = await client.post(
        "/console/links", json={"email": alice.email, "x": 1}, headers=bearer(staff.token)
    )
    assert_error(extra, 400)


async def test_the_command_prints_a_link(database_url: str, world: World) -> None:
    from tests.support.cli import zoopay_json

    alice = await world.user()
    printed = zoopay_json(database_url, "console", "link", alice.email)
    assert set(printed) == {"url"}
    assert re.fullmatch(
        r"http://127\.0\.0\.1:8080/console/link\?secret=zcl_[\w-]{43}", printed["url"]
    )


# --- the same figures as the API; nothing more than the API allows ------------------------------


async def test_the_overview_shows_what_the_api_says(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    catalog: Catalog,
    clock: Clock,
) -> None:
    alice = await world.user()
    async with transaction(engine) as conn:
        reported = Reported(report(alice.id, clock), SERVICE_TOKEN_ID)
        await record_calls(conn, catalog=catalog, reported=[reported], now=clock.now)
    await sign_in(client, engine, alice, clock)
    api = await ok(await client.get("/user/payment/balance", headers=bearer(alice.token)))
    page = (await client.get("/console/user/")).text
    assert (
        f'data-testid="monthly-value">{api["monthly_api_credits_remaining_monetary_value"]} USD'
        in page
    )
    assert (
        f'data-testid="stable-value">{api["stable_api_credits_remaining_monetary_value"]} USD'
        in page
    )
    assert f'data-testid="total-due">{api["total_due"]} USD' in page
    assert f'data-testid="monthly-credits">{api["monthly_api_credits_remaining"]}<' in page
    assert "<svg" in page and "file" in page
    calls = (await client.get("/console/user/calls", params={"endpoint": "/file/"})).text
    api_calls = await ok(await client.get("/user/api-calls", headers=bearer(alice.token)))
    [call] = api_calls["items"]
    assert f'data-call="{call["id"]}" data-label="Price">{call["price"]} USD' in calls
    none = (await client.get("/console/user/calls", params={"endpoint": "/ml/"})).text
    assert call["id"] not in none and "match these filters" in none
    tomorrow = (clock.now + timedelta(days=1)).date().isoformat()
    later = (await client.get("/console/user/calls", params={"from": tomorrow})).text
    assert call["id"] not in later
    bad = await client.get("/console/user/calls", params={"from": "yesterday"})
    assert bad.status_code == 400 and "not a date" in bad.text


async def test_a_customer_cannot_open_another_customers_things(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice, bob, admin = await world.user(), await world.user(), await world.user()
    org = await world.org(admin)
    bob_token = await ok(
        await client.post("/user/api-tokens", params={"label": "b"}, headers=bearer(bob.token)), 201
    )
    invitation = await ok(
        await client.post(
            "/org/members",
            json={"email": bob.email, "role": "member"},
            headers=bearer(admin.token),
        ),
        201,
    )
    csrf = await sign_in(client, engine, alice, clock)
    before = await dump(engine)
    revoke = await client.post(
        f"/console/user/tokens/{bob_token['id']}/revoke", data={"csrf": csrf}, headers=FORM
    )
    assert revoke.status_code == 404
    accept = await client.post(
        f"/console/user/invitations/{invitation['id']}/accept", data={"csrf": csrf}, headers=FORM
    )
    assert accept.status_code == 404
    for path in (
        f"/console/staff/user/{bob.id}",
        f"/console/staff/org/{org.id}",
        "/console/staff/",
    ):
        assert (await client.get(path)).status_code == 403, path
    staff_post = await client.post(
        f"/console/staff/user/{bob.id}/balance",
        data={"csrf": csrf, "monthly": "100", "reason": "x"},
        headers=FORM,
    )
    assert staff_post.status_code == 403
    assert (await client.get("/console/org/")).status_code == 404  # alice is in no org
    assert (await client.get("/console/user/tokens/whatever")).status_code in (404, 405)
    assert await dump(engine) == before


async def test_forms_need_the_sessions_csrf_token(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice, mallory = await world.user(), await world.user()
    mallory_csrf = await sign_in(client, engine, mallory, clock)
    csrf = await sign_in(client, engine, alice, clock)
    assert csrf != mallory_csrf
    before = await dump(engine)
    for data in ({"label": "x"}, {"label": "x", "csrf": ""}, {"label": "x", "csrf": mallory_csrf}):
        response = await client.post("/console/user/tokens", data=data, headers=FORM)
        assert response.status_code == 403 and "stale" in response.text
    cross_site = await client.post(
        "/console/user/tokens",
        data={"label": "x", "csrf": csrf},
        headers={**FORM, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    as_json = await client.post("/console/user/tokens", json={"csrf": csrf})
    assert as_json.status_code == 415
    assert await dump(engine) == before
    made = await client.post(
        "/console/user/tokens", data={"label": "x", "csrf": csrf}, headers=FORM
    )
    assert made.status_code == 201
    secret = re.search(r'id="new-token" class="secret" readonly value="(zoo_[^"]+)"', made.text)
    assert secret is not None
    assert (
        await client.get("/user/payment/balance", headers=bearer(secret.group(1)))
    ).status_code == 200
    listed = (await client.get("/console/user/tokens")).text
    assert secret.group(1) not in listed and f"zoo_...{secret.group(1)[-4:]}" in listed


async def test_a_member_reads_the_org_but_cannot_reach_admin_forms(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, member = await world.user(), await world.user()
    await world.org(admin, member)
    csrf = await sign_in(client, engine, member, clock)
    overview = await client.get("/console/org/")
    assert overview.status_code == 200 and "read only" in overview.text
    assert 'action="/console/org/plan"' not in (await client.get("/console/org/plan")).text
    assert (await client.get("/console/org/members")).status_code == 403
    assert (await client.get("/console/org/calls")).status_code == 403
    before = await dump(engine)
    for path, data in (
        ("/console/org/invitations", {"email": "x@example.com", "role": "admin"}),
        (f"/console/org/members/{member.id}/role", {"role": "admin"}),
        (f"/console/org/members/{admin.id}/remove", {}),
        ("/console/org/plan", {"tier": "team"}),
    ):
        response = await client.post(path, data={**data, "csrf": csrf}, headers=FORM)
        assert response.status_code == 403, path
    assert await dump(engine) == before


async def test_an_admin_invites_and_the_invited_user_accepts(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    admin, newcomer = await world.user(), await world.user()
    await world.org(admin)
    csrf = await sign_in(client, engine, admin, clock)
    sent = await client.post(
        "/console/org/invitations",
        data={"csrf": csrf, "email": newcomer.email, "role": "member"},
        headers=FORM,
    )
    assert sent.status_code == 303
    assert f'data-invitation="{newcomer.email}"' in (await client.get("/console/org/members")).text
    csrf = await sign_in(client, engine, newcomer, clock)
    page = (await client.get("/console/user/")).text
    [invitation_id] = re.findall(r"/console/user/invitations/([0-9a-f-]{36})/accept", page)
    accepted = await client.post(
        f"/console/user/invitations/{invitation_id}/accept", data={"csrf": csrf}, headers=FORM
    )
    assert accepted.status_code == 303
    members = await ok(await client.get("/org/members", headers=bearer(admin.token)))
    assert {m["email"]: m["role"] for m in members["items"]} == {
        admin.email: "admin",
        newcomer.email: "member",
    }


async def test_a_plan_change_is_reviewed_then_confirmed(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    alice = await world.user()
    csrf = await sign_in(client, engine, alice, clock)
    plans = (await client.get("/console/user/plan")).text
    assert "Review change to pro" in plans and "team" not in plans  # individual plans only
    review = await client.get("/console/user/plan/review", params={"tier": "pro"})
    assert 'data-testid="new-price">49.00 USD' in review.text
    assert (
        await client.get("/console/user/plan/review", params={"tier": "team"})
    ).status_code == 400
    # No card: the console's change is the API's paid one, so it is refused and nothing changes.
    refused = await client.post(
        "/console/user/plan", data={"csrf": csrf, "tier": "pro"}, headers=FORM
    )
    assert refused.status_code == 402 and "no payment method is on file" in refused.text
    api = await ok(await client.get("/user/payment/subscriptions", headers=bearer(alice.token)))
    assert api["modeling_app"]["name"] == "free"
    await with_card(engine, clock, alice)
    review = await client.get("/console/user/plan/review", params={"tier": "pro"})
    shown = re.search(r"Charged now to your default card: <strong>([0-9.]+) USD", review.text)
    assert shown is not None, review.text
    done = await client.post("/console/user/plan", data={"csrf": csrf, "tier": "pro"}, headers=FORM)
    assert done.status_code == 303
    api = await ok(await client.get("/user/payment/subscriptions", headers=bearer(alice.token)))
    assert api["modeling_app"]["name"] == "pro"
    invoices = await ok(await client.get("/user/payment/invoices", headers=bearer(alice.token)))
    # The paid upgrade, and the refused attempt's invoice, voided (made at the same instant).
    charged = Decimal(shown.group(1))
    assert sorted((i["status"], Decimal(i["total"])) for i in invoices) == [
        ("paid", charged),
        ("void", charged),
    ]


async def test_a_plan_change_reviewed_after_the_period_turned_shows_the_charge_it_makes(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """Untouched since its period ended, the subscription still names the period that ended:
    the review priced the rest of it (nothing) while the change charges the new period's."""
    alice = await world.user()
    await with_card(engine, clock, alice)
    clock.advance(days=31, hours=-1)  # 2026-02-15 11:00, an hour before the period ends
    csrf = await sign_in(client, engine, alice, clock)
    clock.advance(hours=2)
    review = await client.get("/console/user/plan/review", params={"tier": "pro"})
    shown = re.search(r"Charged now to your default card: <strong>([0-9.]+) USD", review.text)
    assert shown is not None, review.text
    # 49.00 x 671/672 hours of the period from 2026-02-15 12:00: 48.927... -> 48.92.
    assert shown.group(1) == "48.92"
    done = await client.post("/console/user/plan", data={"csrf": csrf, "tier": "pro"}, headers=FORM)
    assert done.status_code == 303
    invoices = await ok(await client.get("/user/payment/invoices", headers=bearer(alice.token)))
    assert [(i["status"], Decimal(i["total"])) for i in invoices] == [("paid", Decimal("48.92"))]


async def test_a_plan_change_is_reviewed_with_its_tax_as_the_card_is_charged(
    app_settings: Settings, engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    """The review showed the fee alone while the upgrade's invoice is taxed by the billing
    country: the card was charged more than the page said."""
    settings = app_settings.model_copy(update={"tax_rates": {"DE": Decimal("0.19")}})
    alice = await world.user()
    await with_card(engine, clock, alice)
    details = BillingDetails(name="Muster GmbH", address=Address(country="DE", zip="10115"))
    async with transaction(engine) as conn:
        await save_billing_info(
            conn, customer=alice.user.customer, details=details, creating=True, now=clock.now
        )
    async with app_client(create_app(settings, engine=engine, catalog=catalog), clock) as client:
        csrf = await sign_in(client, engine, alice, clock)
        review = await client.get("/console/user/plan/review", params={"tier": "pro"})
        proration = html.unescape(review.text)
        # At the period's start: the whole 49.00, and 19% of it.
        assert "Charged now to your default card: <strong>58.31 USD</strong>" in proration
        assert "and 9.31 USD of tax on it" in proration
        done = await client.post(
            "/console/user/plan", data={"csrf": csrf, "tier": "pro"}, headers=FORM
        )
        assert done.status_code == 303
        invoices = await ok(await client.get("/user/payment/invoices", headers=bearer(alice.token)))
    assert [(i["status"], i["total"], i["tax"]) for i in invoices] == [("paid", "58.31", "9.31")]


async def test_a_move_down_from_a_plan_staff_gave_is_reviewed_as_crediting_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock, catalog: Catalog
) -> None:
    """The review promised the unused rest of a plan nobody paid for, which the change (rightly)
    does not credit."""
    alice = await world.user()
    await staff_plan(engine, catalog, alice.user.customer, TierName.PRO, clock.now)
    clock.advance(days=1)
    csrf = await sign_in(client, engine, alice, clock)
    review = await client.get("/console/user/plan/review", params={"tier": "free"})
    assert "Nothing is charged now." in review.text and "Credited" not in review.text
    done = await client.post(
        "/console/user/plan", data={"csrf": csrf, "tier": "free"}, headers=FORM
    )
    assert done.status_code == 303
    async with engine.connect() as conn:
        credits = (await conn.execute(select(billing_credits))).all()
    assert credits == []


# --- staff -------------------------------------------------------------------------------------


async def test_staff_find_a_customer_and_set_a_balance_with_a_reason(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    csrf = await sign_in(client, engine, staff, clock)
    found = (await client.get("/console/staff/", params={"q": alice.email[:12]})).text
    assert f"/console/staff/user/{alice.id}" in found
    by_id = (await client.get("/console/staff/", params={"q": alice.id})).text
    assert f"/console/staff/user/{alice.id}" in by_id
    path = f"/console/staff/user/{alice.id}/balance"
    before = await dump(engine)
    no_reason = await client.post(path, data={"csrf": csrf, "stable": "5"}, headers=FORM)
    assert no_reason.status_code == 400 and "reason is required" in no_reason.text
    bad = await client.post(
        path, data={"csrf": csrf, "stable": "5.1234567", "reason": "r"}, headers=FORM
    )
    assert bad.status_code == 400
    assert await dump(engine) == before
    done = await client.post(
        path,
        data={"csrf": csrf, "stable": "12.5", "reason": "goodwill <b>credit</b>"},
        headers=FORM,
    )
    assert done.status_code == 303
    page = (await client.get(f"/console/staff/user/{alice.id}")).text
    assert 'data-testid="stable-value">12.50 USD' in page
    assert "goodwill &lt;b&gt;credit&lt;/b&gt;" in page  # autoescaped
    # The ledger says who made the change by email, not by user id.
    by = re.findall(r'<td data-label="By">(.*?)</td>', page)
    assert by[0] == staff.email, by  # newest first
    assert staff.id not in page
    async with engine.connect() as conn:
        entry = (
            await conn.execute(
                select(ledger_entries).where(ledger_entries.c.reason == "staff_change")
            )
        ).one()
    assert entry.note == "goodwill <b>credit</b>" and entry.actor == staff.id
    assert entry.delta_micros == 12_500_000
    ledger = await ok(
        await client.get(f"/users/{alice.id}/payment/ledger", headers=bearer(staff.token))
    )
    assert ledger["items"][0]["note"] == "goodwill <b>credit</b>"
    # The API's staff PUT still works as before, with no note.
    put = await client.put(
        f"/users/{alice.id}/payment/balance",
        json={"stable_api_credits_remaining_monetary_value": "1.00"},
        headers=bearer(staff.token),
    )
    assert put.status_code == 200
    ledger = await ok(
        await client.get(f"/users/{alice.id}/payment/ledger", headers=bearer(staff.token))
    )
    assert ledger["items"][0]["note"] is None
    assert (await client.get(f"/console/staff/user/{uuid.uuid4()}")).status_code == 404


async def test_staff_set_their_threshold_of_a_customer(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice = await world.user(staff=True), await world.user()
    api = f"/users/{alice.id}/billing/usage-collection-threshold"
    own = await client.put(
        "/user/billing/usage-collection-threshold",
        json={"amount": "20", "expected_version": 0},
        headers=bearer(alice.token),
    )
    assert own.json()["version"] == 1
    csrf = await sign_in(client, engine, staff, clock)
    page = (await client.get(f"/console/staff/user/{alice.email}")).text
    assert 'data-testid="threshold">20.00 USD' in page and "(customer;" in page
    path = f"/console/staff/user/{alice.id}/threshold"

    before = await dump(engine)
    for form, status, says in [
        ({"amount": "0.5", "version": "1"}, 400, "between 1.00 and 1000000.00 USD for staff"),
        ({"amount": "5", "version": "0"}, 409, "stale"),
        ({"amount": "5", "version": ""}, 400, "reload the page"),
        ({"amount": "five", "version": "1"}, 400, "amount"),
    ]:
        refused = await client.post(path, data={"csrf": csrf, **form}, headers=FORM)
        assert refused.status_code == status and says in html.unescape(refused.text), form
    assert await dump(engine) == before

    done = await client.post(path, data={"csrf": csrf, "amount": "5", "version": "1"}, headers=FORM)
    assert (done.status_code, done.headers["location"]) == (303, f"/console/staff/user/{alice.id}")
    page = (await client.get(f"/console/staff/user/{alice.id}")).text
    assert 'data-testid="threshold">5.00 USD' in page and "(admin;" in page
    seen = await ok(await client.get(api, headers=bearer(staff.token)))
    assert (seen["admin_amount"], seen["customer_amount"], seen["version"]) == ("5.00", "20.00", 2)

    # The customer cannot reach staff's form, signed in to the console as themselves.
    await client.post("/console/sign-out", data={"csrf": csrf}, headers=FORM)
    alices_csrf = await sign_in(client, engine, alice, clock)
    before = await dump(engine)
    mine = await client.post(
        path, data={"csrf": alices_csrf, "amount": "", "version": "2"}, headers=FORM
    )
    assert mine.status_code == 403
    assert await dump(engine) == before

    await client.post("/console/sign-out", data={"csrf": alices_csrf}, headers=FORM)
    csrf = await sign_in(client, engine, staff, clock)
    removed = await client.post(
        path, data={"csrf": csrf, "amount": "", "version": "2"}, headers=FORM
    )
    assert removed.status_code == 303
    seen = await ok(await client.get(api, headers=bearer(staff.token)))
    assert (seen["admin_amount"], seen["effective_amount"], seen["source"]) == (
        None,
        "20.00",
        "customer",
    )


async def test_the_staff_overview_counts_plans_and_revenue(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    people = [
        await world.user(staff=True),
        await world.user(),
        await world.user(),
        await world.user(),
    ]
    staff_person, pro_person, admin_person, member_person = people
    org = await world.org(admin_person, member_person)
    await with_card(engine, clock, pro_person, org)  # upgrades are paid
    for token, path, tier in (
        (pro_person.token, "/user/payment/subscriptions", "pro"),
        (admin_person.token, "/org/payment/subscriptions", "team"),
    ):
        response = await client.put(path, json={"modeling_app": tier}, headers=bearer(token))
        assert response.status_code == 200, response.text
    await sign_in(client, engine, staff_person, clock)
    page = (await client.get("/console/staff/")).text
    assert 'data-plan="free">3<' in page and 'data-plan="pro">1<' in page
    assert 'data-plan="team">1<' in page
    # pro 49.00 + team 99.00 per member x 2 members
    assert f'data-testid="mrr">{Decimal("49") + 2 * Decimal("99"):.2f} USD' in page


async def test_staff_set_a_users_plan_and_an_orgs_enterprise_price(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    staff, alice, admin = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin)
    csrf = await sign_in(client, engine, staff, clock)
    done = await client.post(
        f"/console/staff/user/{alice.id}/plan", data={"csrf": csrf, "tier": "pro"}, headers=FORM
    )
    assert done.status_code == 303
    api = await ok(await client.get("/user/payment/subscriptions", headers=bearer(alice.token)))
    assert api["modeling_app"]["name"] == "pro"
    wrong = await client.post(
        f"/console/staff/user/{alice.id}/plan", data={"csrf": csrf, "tier": "team"}, headers=FORM
    )
    assert wrong.status_code == 400
    path = f"/console/staff/org/{org.id}/enterprise-price"
    bad = await client.post(
        path,
        data={"csrf": csrf, "type": "flat", "interval": "fortnight", "price": "10"},
        headers=FORM,
    )
    assert bad.status_code == 400
    priced = await client.post(
        path,
        data={"csrf": csrf, "type": "per_user", "interval": "month", "price": "80.00"},
        headers=FORM,
    )
    assert priced.status_code == 303
    balance = await ok(
        await client.get(f"/orgs/{org.id}/payment/balance", headers=bearer(staff.token))
    )
    assert balance["modeling_app_enterprise_price"] == {
        "type": "per_user",
        "interval": "month",
        "price": "80.00",
    }
    page = (await client.get(f"/console/staff/org/{org.id}")).text
    assert "Enterprise price: 80.00 USD / month (per_user)" in page


def test_access_logs_never_show_a_link_secret() -> None:
    import logging

    from zoopay.console.web import RedactLinkSecrets

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/console/link?secret=zcl_abcDEF-123_x&x=1", "1.1", 200),
        None,
    )
    assert RedactLinkSecrets().filter(record)
    assert "zcl_abc" not in record.getMessage()
    assert "/console/link?secret=[redacted]&x=1" in record.getMessage()


async def test_a_ledger_page_that_is_no_ledger_id_is_refused(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """`ledger_page` is a ledger entry's id: a digit that int() cannot read ("²") or one past
    the id column's range is a 400 that says so, not an internal error."""
    staff, alice = await world.user(staff=True), await world.user()
    await sign_in(client, engine, staff, clock)
    page = f"/console/staff/user/{alice.id}"
    for bad in ("²", "99999999999999999999"):
        response = await client.get(page, params={"ledger_page": bad})
        assert response.status_code == 400 and "ledger_page" in response.text, bad
    first = await client.get(page, params={"ledger_page": "1"})
    assert first.status_code == 200 and "No entries." in first.text


async def test_api_call_days_out_of_range_are_refused(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """A day the calls page cannot turn into an instant (the day after 9999-12-31; 0001-01-01 in
    a zone east of UTC) is a 400, not an internal error."""
    alice = await world.user()
    await sign_in(client, engine, alice, clock)
    client.cookies.set("zoopay_tz", "Asia/Tokyo", domain="zoopay.test", path="/")
    for params in ({"to": "9999-12-31"}, {"from": "0001-01-01"}):
        response = await client.get("/console/user/calls", params=params)
        assert response.status_code == 400, params
        assert "must be from 2000-01-01" in html.unescape(response.text), params
    today = clock.now.date().isoformat()
    fine = await client.get("/console/user/calls", params={"from": today, "to": today})
    assert fine.status_code == 200 and "match these filters" in fine.text


async def test_behind_a_tls_proxy_the_public_url_is_the_consoles_origin(
    app_settings: Settings, engine: AsyncEngine, catalog: Catalog, world: World, clock: Clock
) -> None:
    """`zoopay serve` speaks plain HTTP (no TLS, no proxy headers): with ZOOPAY_PUBLIC_URL
    https://..., the browser is on https and its forms say `Origin: https://...` while the
    request zoopay sees is http. The console's forms are still its own (not refused as from
    another site), and the session cookie is Secure."""
    settings = app_settings.model_copy(update={"public_url": "https://zoopay.test"})
    app = create_app(settings, engine=engine, catalog=catalog)
    browser = {**FORM, "Origin": "https://zoopay.test", "Sec-Fetch-Site": "same-origin"}
    alice = await world.user()
    async with app_client(app, clock) as client:
        secret = await link_for(engine, alice, clock)
        signed = await client.post("/console/link", data={"secret": secret}, headers=browser)
        assert signed.status_code == 303, signed.text
        cookie = signed.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie, cookie
        # The test client speaks http, and sends no Secure cookie over it: set again without.
        client.cookies.set("zoopay_console", client.cookies["zoopay_console"])
        csrf = await csrf_of(client)
        made = await client.post(
            "/console/user/tokens", data={"label": "x", "csrf": csrf}, headers=browser
        )
        assert made.status_code == 201 and 'id="new-token"' in made.text
        for origin in ("https://evil.example", "https://zoopay.test.evil.example"):
            refused = await client.post(
                "/console/user/tokens",
                data={"label": "y", "csrf": csrf},
                headers={**FORM, "Origin": origin},
            )
            assert refused.status_code == 403 and "another site" in refused.text, origin
        out = await client.post("/console/sign-out", data={"csrf": csrf}, headers=browser)
        assert out.status_code == 303 and "Secure" in out.headers["set-cookie"]


async def test_a_service_token_cannot_sign_in_as_staff(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, clock: Clock
) -> None:
    """A service token signs in the product's users, never staff: a link for a staff user would
    turn a token that may only report usage into a staff session (balances, refunds)."""
    staff = await world.user(staff=True)
    async with transaction(engine) as conn:
        service_token = await accounts.create_service_token(
            conn, service_name="product", now=clock.now
        )
    refused = await client.post(
        "/console/links", json={"email": staff.email}, headers=bearer(service_token)
    )
    assert_error(refused, 403, "forbidden")
    async with engine.connect() as conn:
        assert (await conn.execute(select(console_links))).all() == []
    # Staff may still make one for another staff user, as `zoopay console link` does.
    other_staff = await world.user(staff=True)
    made = await client.post(
        "/console/links", json={"email": other_staff.email}, headers=bearer(staff.token)
    )
    assert (await ok(made, 201))["url"].startswith("http://zoopay.test/console/link?secret=zcl_")
