"""The plan catalog: shipped defaults, or a JSON file named by ZOOPAY_CATALOG."""

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError, model_validator

from zoopay.catalog.schemas import (
    ApiPrice,
    ApiPriceList,
    CatalogTier,
    IndividualTierName,
    OptionEnterprise,
    OptionFlat,
    OptionIndividual,
    TierName,
    TierTerms,
)
from zoopay.money import to_micros
from zoopay.wire import WireModel

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.json")


class CatalogError(Exception):
    """The catalog file is missing, not JSON, or breaks a rule; the message says which."""


class CatalogFile(WireModel):
    modeling_app: list[CatalogTier]
    api_prices: ApiPriceList = ApiPriceList()

    @model_validator(mode="after")
    def _check_tiers(self) -> "CatalogFile":
        names = [tier.name for tier in self.modeling_app]
        if len(set(names)) != len(names):
            raise ValueError("each tier name may appear once")
        if TierName.FREE not in names:
            raise ValueError("a 'free' tier is required: every user starts on it")
        for tier in self.modeling_app:
            individual = tier.name.value in IndividualTierName.__members__.values()
            if individual != isinstance(tier.type, OptionIndividual):
                kind = "individual" if individual else "organization"
                raise ValueError(f"tier {tier.name.value!r} must have type {kind!r}")
            if tier.name == TierName.FREE and not _is_free(tier):
                raise ValueError("the 'free' tier must have a flat price of 0")
        return self


def _is_free(tier: TierTerms) -> bool:
    return isinstance(tier.price, OptionFlat) and tier.price.price == 0


@dataclass(frozen=True)
class Plan:
    """One tier's terms, with the amounts the ledger works in."""

    terms: CatalogTier
    rank: int

    @property
    def name(self) -> TierName:
        return self.terms.name

    @property
    def monthly_grant_micros(self) -> int:
        return self.terms.monthly_pay_as_you_go_api_credits * self.credit_price_micros

    @property
    def credit_price_micros(self) -> int:
        return to_micros(self.terms.pay_as_you_go_api_credit_price)

    @property
    def is_individual(self) -> bool:
        return isinstance(self.terms.type, OptionIndividual)

    @property
    def allows_overage(self) -> bool:
        return self.terms.allows_overage

    @property
    def sold_by_sales(self) -> bool:
        return isinstance(self.terms.price, OptionEnterprise)


@dataclass(frozen=True)
class CallPrice:
    per_call_micros: int
    per_minute_micros: int

    def of(self, minutes: int) -> int:
        return self.per_call_micros + minutes * self.per_minute_micros


# Endpoints are whatever reporters send: the memory for their prices is bounded.
_REMEMBERED_ENDPOINTS = 10_000


class Catalog:
    def __init__(self, catalog_file: CatalogFile) -> None:
        self._plans = {t.name: Plan(t, rank) for rank, t in enumerate(catalog_file.modeling_app)}
        self._prices = catalog_file.api_prices
        self._price_of_endpoint: dict[str, CallPrice] = {}

    def api_price(self, endpoint: str) -> ApiPrice:
        """The price of a call to `endpoint`: a category name or a path under its prefixes."""
        for category, price in self._prices.categories.items():
            if endpoint == category.value or any(endpoint.startswith(p) for p in price.prefixes):
                return price
        return self._prices.default

    def category(self, endpoint: str) -> str | None:
        """The name of the category `endpoint` belongs to, as `api_price` matches it."""
        for category, price in self._prices.categories.items():
            if endpoint == category.value or any(endpoint.startswith(p) for p in price.prefixes):
                return category.value
        return None

    def call_price(self, endpoint: str) -> "CallPrice":
        """`api_price` in micro-dollars, remembered for the endpoints seen most."""
        price = self._price_of_endpoint.get(endpoint)
        if price is None:
            listed = self.api_price(endpoint)
            price = CallPrice(to_micros(listed.per_call), to_micros(listed.per_minute))
            if len(self._price_of_endpoint) < _REMEMBERED_ENDPOINTS:
                self._price_of_endpoint[endpoint] = price
        return price

    def plan(self, name: TierName | str) -> Plan | None:
        return self._plans.get(TierName(name))

    def plans(self) -> list[Plan]:
        """Every plan on offer, in the catalog's order."""
        return list(self._plans.values())


def load_catalog(path: Path | None = None) -> Catalog:
    source = path or DEFAULT_CATALOG
    try:
        raw = json.loads(source.read_text(), parse_float=Decimal)
        return Catalog(CatalogFile.model_validate(raw))
    except OSError as exc:
        raise CatalogError(f"cannot read the catalog {source}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"the catalog {source} is not JSON: {exc}") from None
    except ValidationError as exc:
        raise CatalogError(f"the catalog {source} is invalid:\n{_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    return "\n".join(
        f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: "
        + err["msg"].removeprefix("Value error, ")
        for err in exc.errors()
    )


__all__ = ["Catalog", "CatalogError", "Plan", "load_catalog"]
