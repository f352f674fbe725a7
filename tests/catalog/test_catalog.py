"""The plan catalog: the shipped tiers as `GET /pricing/subscriptions` lists them, a replacement
catalog from ZOOPAY_CATALOG, and catalogs refused with a clear message (also by the CLI)."""

import copy
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock
from tests.support.billing import with_card
from tests.support.cli import CLI_LIMIT_SECONDS, ZOOPAY, zoopay_env
from tests.support.reference import reference_fields
from zoopay.accounts import service as accounts
from zoopay.app import create_app
from zoopay.catalog.schemas import PricingSubscriptions
from zoopay.catalog.service import DEFAULT_CATALOG, Catalog, CatalogError, load_catalog
from zoopay.config import Settings
from zoopay.db.engine import transaction
from zoopay.db.tables import users

EXPECTED_TIERS: list[dict[str, Any]] = [
    {
        "name": "free",
        "price": {"type": "flat", "interval": "month", "price": "0.00"},
        "monthly_pay_as_you_go_api_credits": 20,
        "monthly_pay_as_you_go_api_credits_monetary_value": "10.00",
        "pay_as_you_go_api_credit_price": "0.50",
        "type": {"type": "individual"},
        "support_tier": "community",
        "annual_discount": None,
    },
    {
        "name": "pro",
        "price": {"type": "flat", "interval": "month", "price": "49.00"},
        "monthly_pay_as_you_go_api_credits": 200,
        "monthly_pay_as_you_go_api_credits_monetary_value": "100.00",
        "pay_as_you_go_api_credit_price": "0.50",
        "type": {"type": "individual"},
        "support_tier": "standard_email",
        "annual_discount": 15,
    },
    {
        "name": "team",
        "price": {"type": "per_user", "interval": "month", "price": "99.00"},
        "monthly_pay_as_you_go_api_credits": 500,
        "monthly_pay_as_you_go_api_credits_monetary_value": "250.00",
        "pay_as_you_go_api_credit_price": "0.50",
        "type": {"type": "organization", "saml_sso": False},
        "support_tier": "priority_email",
        "annual_discount": 15,
    },
    {
        "name": "enterprise",
        "price": {"type": "enterprise"},
        "monthly_pay_as_you_go_api_credits": 2000,
        "monthly_pay_as_you_go_api_credits_monetary_value": "1000.00",
        "pay_as_you_go_api_credit_price": "0.50",
        "type": {"type": "organization", "saml_sso": True},
        "support_tier": "premium",
        "annual_discount": None,
    },
]


def tier(name: str, **fields: Any) -> dict[str, Any]:
    """A minimal valid catalog tier."""
    individual = name in ("free", "plus", "pro")
    base: dict[str, Any] = {
        "name": name,
        "description": f"The {name} plan.",
        "price": {"type": "flat", "interval": "month", "price": "0.00"},
        "monthly_pay_as_you_go_api_credits": 0,
        "pay_as_you_go_api_credit_price": "0.25",
        "support_tier": "community",
        "training_data_behavior": "always",
        "type": {"type": "individual"}
        if individual
        else {"type": "organization", "saml_sso": False},
    }
    return {**base, **fields}


REPLACEMENT: dict[str, Any] = {
    "modeling_app": [
        tier("free", monthly_pay_as_you_go_api_credits=4, description="Try it out."),
        tier(
            "plus",
            price={"type": "flat", "interval": "month", "price": "9.99"},
            monthly_pay_as_you_go_api_credits=40,
            support_tier="standard_email",
            annual_discount=10,
        ),
    ]
}


def write_catalog(directory: Path, content: dict[str, Any] | str) -> Path:
    path = directory / "catalog.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def default_catalog() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFAULT_CATALOG.read_text())
    return loaded


@pytest.fixture
async def make_client(
    engine: AsyncEngine, clock: Clock
) -> AsyncIterator[Callable[[Settings, Catalog | None], httpx.AsyncClient]]:
    opened: list[httpx.AsyncClient] = []

    def make(settings: Settings, catalog: Catalog | None) -> httpx.AsyncClient:
        app = create_app(settings, engine=engine, catalog=catalog)
        app.state.clock = lambda: clock.now
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://zoopay.test"
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


# The shipped catalog


async def test_pricing_lists_the_four_tiers_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/pricing/subscriptions")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"modeling_app"}
    tiers = body["modeling_app"]
    assert [t["name"] for t in tiers] == ["free", "pro", "team", "enterprise"]
    for got, expected in zip(tiers, EXPECTED_TIERS, strict=True):
        assert {key: got[key] for key in expected} == expected
        assert got["description"]
        assert got["features"]
        assert got["training_data_behavior"] in ("always", "default_on", "default_off")


async def test_each_tier_has_exactly_the_reference_fields(client: httpx.AsyncClient) -> None:
    fields = reference_fields("ModelingAppSubscriptionTier")
    tiers = (await client.get("/pricing/subscriptions")).json()["modeling_app"]
    assert len(tiers) == 4
    for got in tiers:
        assert set(got) == fields, got["name"]


async def test_a_bad_token_does_not_matter_to_the_catalog(client: httpx.AsyncClient) -> None:
    plain = await client.get("/pricing/subscriptions")
    with_token = await client.get(
        "/pricing/subscriptions", headers={"Authorization": "Bearer not-a-token"}
    )
    assert with_token.status_code == 200
    assert with_token.json() == plain.json()


# A replacement catalog


async def test_a_replacement_catalog_from_zoopay_catalog_is_served(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
    make_client: Callable[[Settings, Catalog | None], httpx.AsyncClient],
) -> None:
    path = write_catalog(tmp_path, REPLACEMENT)
    monkeypatch.setenv("ZOOPAY_CATALOG", str(path))
    settings = Settings(database_url=database_url)
    assert settings.catalog == path
    catalog = load_catalog(settings.catalog)

    for served_catalog in (catalog, None):  # given, or loaded by create_app from the settings
        client = make_client(settings, served_catalog)
        tiers = (await client.get("/pricing/subscriptions")).json()["modeling_app"]
        assert [t["name"] for t in tiers] == ["free", "plus"]
        free, plus = tiers
        assert free["description"] == "Try it out."
        assert free["monthly_pay_as_you_go_api_credits"] == 4
        assert free["monthly_pay_as_you_go_api_credits_monetary_value"] == "1.00"
        assert free["pay_as_you_go_api_credit_price"] == "0.25"
        assert plus["price"] == {"type": "flat", "interval": "month", "price": "9.99"}
        assert plus["monthly_pay_as_you_go_api_credits_monetary_value"] == "10.00"
        assert plus["support_tier"] == "standard_email"
        assert plus["annual_discount"] == 10
        assert set(free) == set(plus) == reference_fields("ModelingAppSubscriptionTier")

    # Plans follow the replacement: users start on its free grant, its tiers are the offer.
    async with transaction(engine) as conn:
        user = await accounts.create_user(
            conn, catalog=catalog, email="custom@example.com", now=clock.now
        )
        token = await accounts.create_token(conn, user=user, now=clock.now)
    await with_card(engine, clock, user.customer)  # an upgrade is paid
    headers = {"Authorization": f"Bearer {token}"}
    client = make_client(settings, catalog)
    balance = (await client.get("/user/payment/balance", headers=headers)).json()
    assert balance["monthly_api_credits_remaining_monetary_value"] == "1.00"
    assert balance["monthly_api_credits_remaining"] == 4
    assert balance["subscription_details"]["modeling_app"] == free

    url = "/user/payment/subscriptions"
    plus_plan = await client.post(url, headers=headers, json={"modeling_app": "plus"})
    assert plus_plan.status_code == 200, plus_plan.text
    assert plus_plan.json()["modeling_app"] == plus
    balance = (await client.get("/user/payment/balance", headers=headers)).json()
    assert balance["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert balance["monthly_api_credits_remaining"] == 40
    pro = await client.put(url, headers=headers, json={"modeling_app": "pro"})
    assert pro.status_code == 400
    assert pro.json()["error_code"] == "bad_request"
    assert "pro" in pro.json()["message"]
    assert "not offered" in pro.json()["message"]


# Catalogs that are refused


def _without_free(catalog: dict[str, Any]) -> None:
    catalog["modeling_app"] = [t for t in catalog["modeling_app"] if t["name"] != "free"]


def _duplicate_pro(catalog: dict[str, Any]) -> None:
    pro = next(t for t in catalog["modeling_app"] if t["name"] == "pro")
    catalog["modeling_app"].append(copy.deepcopy(pro))


def _tier(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in catalog["modeling_app"] if t["name"] == name)
    return found


def _individual_team(catalog: dict[str, Any]) -> None:
    _tier(catalog, "team")["type"] = {"type": "individual"}


def _negative_price(catalog: dict[str, Any]) -> None:
    _tier(catalog, "pro")["price"]["price"] = "-49.00"


def _seven_decimals(catalog: dict[str, Any]) -> None:
    _tier(catalog, "pro")["pay_as_you_go_api_credit_price"] = "0.1234567"


def _unknown_field(catalog: dict[str, Any]) -> None:
    _tier(catalog, "pro")["colour"] = "purple"


def _paid_free(catalog: dict[str, Any]) -> None:
    _tier(catalog, "free")["price"]["price"] = "5.00"


BREAKAGES: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("missing-free", _without_free, ["'free' tier is required"]),
    ("duplicate-tier", _duplicate_pro, ["each tier name may appear once"]),
    ("team-individual", _individual_team, ["tier 'team' must have type 'organization'"]),
    ("negative-price", _negative_price, ["modeling_app.1.price", "must not be negative"]),
    (
        "seven-decimals",
        _seven_decimals,
        ["modeling_app.1.pay_as_you_go_api_credit_price", "at most 6 decimal places"],
    ),
    ("unknown-field", _unknown_field, ["modeling_app.1.colour", "not permitted"]),
    ("paid-free", _paid_free, ["'free' tier must have a flat price of 0"]),
]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [(b, e) for _, b, e in BREAKAGES],
    ids=[name for name, _, _ in BREAKAGES],
)
def test_an_invalid_catalog_is_refused_with_a_clear_message(
    tmp_path: Path, breakage: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    catalog = default_catalog()
    breakage(catalog)
    path = write_catalog(tmp_path, catalog)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    message = str(raised.value)
    assert f"the catalog {path} is invalid" in message
    for part in expected:
        assert part in message


def test_a_catalog_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, '{"modeling_app": [')
    with pytest.raises(CatalogError, match="is not JSON") as raised:
        load_catalog(path)
    assert str(path) in str(raised.value)


def test_a_missing_catalog_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(CatalogError, match="cannot read the catalog") as raised:
        load_catalog(path)
    assert str(path) in str(raised.value)


def test_the_shipped_catalog_file_is_valid() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    assert [t.name for t in PricingSubscriptions.of(catalog).modeling_app] == [
        "free",
        "pro",
        "team",
        "enterprise",
    ]


async def _user_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "1"], ["users", "create", "cli-catalog@example.com"]],
    ids=["serve", "users-create"],
)
async def test_the_cli_refuses_to_start_with_an_invalid_catalog(
    tmp_path: Path, database_url: str, engine: AsyncEngine, command: list[str]
) -> None:
    catalog = default_catalog()
    _without_free(catalog)
    path = write_catalog(tmp_path, catalog)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)

    result = subprocess.run(
        [str(ZOOPAY), *command],
        env=zoopay_env(database_url, ZOOPAY_CATALOG=str(path)),
        capture_output=True,
        text=True,
        timeout=CLI_LIMIT_SECONDS,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert f"error: {raised.value}" in result.stderr
    assert "'free' tier is required" in result.stderr
    assert "Traceback" not in result.stderr
    assert await _user_count(engine) == 0


async def test_the_cli_reports_a_catalog_that_is_not_json(
    tmp_path: Path, database_url: str, engine: AsyncEngine
) -> None:
    path = write_catalog(tmp_path, "not json at all")
    result = subprocess.run(
        [str(ZOOPAY), "users", "create", "cli-catalog@example.com", "--staff"],
        env=zoopay_env(database_url, ZOOPAY_CATALOG=str(path)),
        capture_output=True,
        text=True,
        timeout=CLI_LIMIT_SECONDS,
        check=False,
    )
    assert result.returncode != 0
    assert f"error: the catalog {path} is not JSON" in result.stderr
    assert await _user_count(engine) == 0
