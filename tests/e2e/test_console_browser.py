"""The console in Debian's Chromium, driven by Playwright, against a live `zoopay serve`:
a customer signs in by link and sees what the API says, changes plan after seeing the change,
makes and revokes a token; an org admin invites a member who accepts; staff find a customer and
set a balance with a reason that lands in the ledger.

Every page is screenshotted at 375 and 1440 px wide into tests/e2e/screenshots/ (gitignored),
kept after the run. Playwright never downloads a browser here: it launches /usr/bin/chromium.
"""

import asyncio
import re
import shutil
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.e2e.conftest import Account, LiveServer, People, Zoopay

SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDTHS = (375, 1440)
ZONE = "Europe/Paris"


@pytest.fixture(scope="module")
async def chromium_browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is missing: `apt-get install chromium` (make test does it)")
    SCREENSHOTS.mkdir(exist_ok=True)
    print(f"\nconsole screenshots: {SCREENSHOTS}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def context(chromium_browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await chromium_browser.new_context(
        timezone_id=ZONE, viewport={"width": 1440, "height": 900}
    )
    made.set_default_timeout(20_000)
    yield made
    await made.close()


async def shoot(page: Page, name: str) -> None:
    """The page at each width, whole; and nothing may be wider than the viewport."""
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow} px wider than {width} px"
    await page.set_viewport_size({"width": 1440, "height": 900})


def link_path(zoopay: Zoopay, email: str) -> str:
    url = zoopay.json("console", "link", email)["url"]
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def sign_in(
    page: Page, server: LiveServer, zoopay: Zoopay, email: str, shot: str | None = None
) -> None:
    await page.goto(server.base_url + link_path(zoopay, email))
    if shot:
        await shoot(page, shot)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator(".who")).to_have_text(email)


def balance_of(server: LiveServer, account: Account) -> dict[str, str]:
    response = httpx.get(f"{server.base_url}/user/payment/balance", headers=account.headers)
    assert response.status_code == 200
    body: dict[str, str] = response.json()
    return body


def report_call(server: LiveServer, staff: Account, user: Account, endpoint: str) -> dict[str, str]:
    now = datetime.now(UTC).isoformat()
    response = httpx.post(
        f"{server.base_url}/api-calls",
        headers=staff.headers,
        json={
            "id": str(uuid.uuid4()),
            "user_id": user.id,
            "endpoint": endpoint,
            "method": "POST",
            "status_code": 200,
            "started_at": now,
            "completed_at": now,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def test_a_customer_signs_in_sees_the_apis_figures_changes_plan_and_manages_tokens(
    context: BrowserContext, server: LiveServer, zoopay: Zoopay, people: People
) -> None:
    staff, alice = people.user(staff=True), people.user()
    call = report_call(server, staff, alice, "/file/conversion")
    report_call(server, staff, alice, "/ml/text-to-cad")
    page = await context.new_page()
    await sign_in(page, server, zoopay, alice.email, shot="link")
    # The page was rendered in UTC, then again in the browser's zone (console.js), named.
    await expect(page.locator("#zone")).to_have_text(ZONE)
    api = balance_of(server, alice)
    await expect(page.get_by_test_id("monthly-value")).to_have_text(
        f"{api['monthly_api_credits_remaining_monetary_value']} USD"
    )
    await expect(page.get_by_test_id("stable-value")).to_have_text(
        f"{api['stable_api_credits_remaining_monetary_value']} USD"
    )
    await expect(page.get_by_test_id("total-due")).to_have_text(f"{api['total_due']} USD")
    await expect(page.get_by_test_id("plan")).to_have_text("free")
    await expect(page.locator("svg.chart rect")).to_have_count(2)
    await shoot(page, "overview")

    await page.get_by_role("link", name="API calls").click()
    await expect(page.locator(f'[data-call="{call["id"]}"]')).to_have_text(f"{call['price']} USD")
    await page.get_by_label("Endpoint starts with").fill("/ml/")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator(f'[data-call="{call["id"]}"]')).to_have_count(0)
    await expect(page.locator("table.calls tbody tr")).to_have_count(1)
    await shoot(page, "calls")

    await page.get_by_role("link", name="Billing", exact=True).click()
    await page.get_by_role("button", name="Add a card").click()
    await shoot(page, "card-form")
    await page.get_by_label("visa 4242 ···· 4242 pm_card_visa").check()
    await page.get_by_role("button", name="Save card").click()
    await expect(page.locator("table.cards")).to_contain_text("visa ···· 4242")
    methods = httpx.get(f"{server.base_url}/user/payment/methods", headers=alice.headers).json()
    assert [(m["card"]["brand"], m["card"]["last4"]) for m in methods["items"]] == [
        ("visa", "4242")
    ]
    await shoot(page, "billing")

    await page.get_by_role("link", name="Invoices", exact=True).click()
    await page.get_by_label("Amount, USD (whole cents, 1.00 to 100000.00)").fill("25.00")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("table.invoices tbody tr").first).to_contain_text("paid")
    await expect(page.locator("table.invoices tbody tr").first).to_contain_text("25.00 USD")
    await shoot(page, "invoices")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="PDF").first.click()
    download = await download_info.value
    pdf = await download.path()
    assert pdf is not None and Path(pdf).read_bytes().startswith(b"%PDF")
    api = balance_of(server, alice)
    assert api["stable_api_credits_remaining_monetary_value"] == "25.00"

    await page.get_by_role("link", name="Plan", exact=True).click()
    await shoot(page, "plan")
    await page.get_by_role("button", name="Review a change to pro").click()
    await expect(page.get_by_test_id("new-price")).to_have_text("49.00 USD")
    # The proration is shown before the change is confirmed, and it is what is then charged.
    proration = await page.get_by_test_id("proration").inner_text()
    shown = re.search(r"Charged now to your default card: ([0-9]+\.[0-9]{2}) USD", proration)
    assert shown is not None, proration
    charged = Decimal(shown.group(1))
    assert Decimal("0.00") < charged <= Decimal("49.00")
    await shoot(page, "plan-review")
    await page.get_by_role("button", name="Confirm change to pro").click()
    await expect(page.get_by_test_id("plan")).to_have_text("pro")
    invoices = httpx.get(f"{server.base_url}/user/payment/invoices", headers=alice.headers).json()
    assert (invoices[0]["status"], Decimal(invoices[0]["total"])) == ("paid", charged)
    subscription = httpx.get(
        f"{server.base_url}/user/payment/subscriptions", headers=alice.headers
    ).json()
    assert subscription["modeling_app"]["name"] == "pro"
    api = balance_of(server, alice)
    await expect(page.get_by_test_id("monthly-value")).to_have_text(
        f"{api['monthly_api_credits_remaining_monetary_value']} USD"
    )

    await page.get_by_role("link", name="API tokens").click()
    await page.get_by_label("Label (optional)").fill("laptop")
    await page.get_by_role("button", name="Create token").click()
    secret = await page.get_by_label("New API token").input_value()
    assert secret.startswith("zoo_")
    await shoot(page, "token-created")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{server.base_url}/user/payment/balance", headers=headers).status_code == 200
    await page.get_by_role("button", name=f"Revoke token zoo_...{secret[-4:]}").click()
    await expect(
        page.get_by_role("button", name=f"Revoke token zoo_...{secret[-4:]}")
    ).to_have_count(0)
    assert secret not in await page.content()
    await shoot(page, "tokens")
    deadline = time.monotonic() + 10  # the token cache trusts a lookup for 0.5 s
    while httpx.get(f"{server.base_url}/user/payment/balance", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still works"
        await asyncio.sleep(0.1)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    await shoot(page, "sign-in")
    await page.goto(server.base_url + "/console/user/")
    await expect(page.get_by_label("API token")).to_be_visible()


async def test_a_payment_that_waits_for_the_bank_is_approved_in_the_browser(
    context: BrowserContext, server: LiveServer, zoopay: Zoopay, people: People
) -> None:
    carol = people.user()
    page = await context.new_page()
    await sign_in(page, server, zoopay, carol.email)
    await page.get_by_role("link", name="Billing", exact=True).click()
    await page.get_by_role("button", name="Add a card").click()
    await page.get_by_label("visa 4000 ···· 3184 pm_card_authenticationRequired").check()
    await page.get_by_role("button", name="Save card").click()
    await page.get_by_role("link", name="Invoices", exact=True).click()
    await page.get_by_label("Amount, USD (whole cents, 1.00 to 100000.00)").fill("10.00")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("main")).to_contain_text("authenticate")  # the 402's page
    await page.goto(f"{server.base_url}/console/user/invoices")
    await expect(page.locator("table.invoices tbody tr").first).to_contain_text(
        "waits for your bank"
    )
    await page.get_by_role("link", name="Authenticate payment").click()
    await expect(page.get_by_test_id("waiting-payment")).to_contain_text("10.00 USD")
    await shoot(page, "authenticate")
    await page.get_by_role("button", name="Approve the payment").click()
    await expect(page.locator("table.invoices tbody tr").first).to_contain_text("paid")
    assert balance_of(server, carol)["stable_api_credits_remaining_monetary_value"] == "10.00"


async def test_an_org_admin_invites_a_member_who_accepts(
    chromium_browser: Browser, server: LiveServer, zoopay: Zoopay, people: People
) -> None:
    admin, bob = people.users(2)
    made = httpx.post(f"{server.base_url}/org", headers=admin.headers, json={"name": "Acme"})
    assert made.status_code == 201, made.text
    admin_context = await chromium_browser.new_context(timezone_id=ZONE)
    bob_context = await chromium_browser.new_context(timezone_id=ZONE)
    try:
        page = await admin_context.new_page()
        await sign_in(page, server, zoopay, admin.email)
        await page.get_by_role("link", name="Org", exact=True).click()
        await shoot(page, "org-overview")
        await page.get_by_role("link", name="Members").click()
        await page.get_by_label("Email address").fill(bob.email)
        await page.get_by_label("Role", exact=True).select_option("member")
        await page.get_by_role("button", name="Send invitation").click()
        await expect(page.locator(f'[data-invitation="{bob.email}"]')).to_be_visible()
        await shoot(page, "members")

        bob_page = await bob_context.new_page()
        await sign_in(bob_page, server, zoopay, bob.email)
        await expect(bob_page.get_by_text("Acme invites you as member")).to_be_visible()
        await shoot(bob_page, "invitation")
        await bob_page.get_by_role("button", name="Accept").click()
        await expect(bob_page.get_by_text("(read only)")).to_be_visible()
        await shoot(bob_page, "org-member")
        # A member reaches no admin form.
        await bob_page.goto(server.base_url + "/console/org/members")
        await expect(bob_page.get_by_text("only an admin of the org may do this")).to_be_visible()

        await page.reload()
        await expect(page.locator(f'[data-member="{bob.email}"]')).to_be_visible()
        await expect(page.locator(f'[data-invitation="{bob.email}"]')).to_have_count(0)
    finally:
        await admin_context.close()
        await bob_context.close()


async def test_staff_find_a_customer_and_set_a_balance_with_a_reason(
    context: BrowserContext, server: LiveServer, zoopay: Zoopay, people: People
) -> None:
    staff, alice = people.user(staff=True), people.user()
    report_call(server, staff, alice, "/file/conversion")
    page = await context.new_page()
    await sign_in(page, server, zoopay, staff.email)
    await page.get_by_role("link", name="Staff").click()
    await page.get_by_label("Find a customer by email, name or id").fill(alice.email)
    await page.get_by_role("button", name="Search").click()
    await shoot(page, "staff")
    await page.get_by_role("link", name=f"user: {alice.email}").click()
    await shoot(page, "staff-customer")
    await page.get_by_label("Stable credits, USD (blank: unchanged)").fill("25.5")
    await page.get_by_label("Reason (kept in the ledger)").fill("refund of ticket 42")
    await page.get_by_role("button", name="Set balance").click()
    await expect(page.get_by_test_id("stable-value")).to_have_text("25.50 USD")
    await expect(page.locator("table.ledger tbody tr").first).to_contain_text("refund of ticket 42")
    await expect(page.locator("table.ledger tbody tr").first).to_contain_text("staff_change")
    await shoot(page, "staff-customer-after")
    api = balance_of(server, alice)
    assert api["stable_api_credits_remaining_monetary_value"] == "25.50"
    ledger = httpx.get(
        f"{server.base_url}/users/{alice.id}/payment/ledger", headers=staff.headers
    ).json()
    assert ledger["items"][0]["note"] == "refund of ticket 42"

    # A paid invoice (alice bought credits with a card), refunded in part by staff.
    intent = httpx.post(f"{server.base_url}/user/payment/intent", headers=alice.headers).json()
    confirmed = httpx.post(
        f"{server.base_url}/processor/setup-intents/confirm",
        json={"client_secret": intent["client_secret"], "payment_method": "pm_card_visa"},
    )
    assert confirmed.status_code == 200, confirmed.text
    bought = httpx.post(
        f"{server.base_url}/user/payment/credits", headers=alice.headers, json={"amount": "10.00"}
    )
    assert bought.status_code == 201, bought.text
    number = bought.json()["number"]
    await page.reload()
    await page.get_by_label(f"Refund amount of invoice {number}, USD").fill("4.00")
    await page.get_by_role("button", name=f"Refund invoice {number}").click()
    row = page.locator(f'[data-invoice="{bought.json()["id"]}"]')
    await expect(row.locator('[data-label="Refunded"]')).to_have_text("4.00 USD")
    await shoot(page, "staff-refund")
    api = balance_of(server, alice)
    assert api["stable_api_credits_remaining_monetary_value"] == "31.50"  # 25.50 + 10 - 4
