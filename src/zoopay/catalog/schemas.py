"""Wire models of the plan catalog, field for field those of kittycad 1.2.0."""

import enum
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, StrictBool

from zoopay.money import Amount
from zoopay.wire import WireModel

if TYPE_CHECKING:  # the catalog's records are built from these models: imported for types only
    from zoopay.catalog.service import Catalog, Plan


class PlanInterval(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class TierName(enum.StrEnum):
    FREE = "free"
    PLUS = "plus"
    PRO = "pro"
    TEAM = "team"
    ENTERPRISE = "enterprise"


class IndividualTierName(enum.StrEnum):
    FREE = "free"
    PLUS = "plus"
    PRO = "pro"


class OrganizationTierName(enum.StrEnum):
    TEAM = "team"
    ENTERPRISE = "enterprise"


class SupportTier(enum.StrEnum):
    COMMUNITY = "community"
    STANDARD_EMAIL = "standard_email"
    PRIORITY_EMAIL = "priority_email"
    PREMIUM = "premium"


class TrainingDataBehavior(enum.StrEnum):
    ALWAYS = "always"
    DEFAULT_ON = "default_on"
    DEFAULT_OFF = "default_off"


class ApiEndpoint(enum.StrEnum):
    MODELING = "modeling"
    ML = "ml"
    FILE = "file"


class ShareLinks(enum.StrEnum):
    PUBLIC = "public"
    PASSWORD_PROTECTED = "password_protected"
    ORGANIZATION_ONLY = "organization_only"


class ZooTool(enum.StrEnum):
    MODELING_APP = "modeling_app"
    DIFF_CHROME_EXTENSION = "diff_chrome_extension"
    TEXT_TO_CAD = "text_to_cad"


class OptionFlat(WireModel):
    """A flat price that is publicly listed."""

    interval: PlanInterval
    price: Amount
    type: Literal["flat"] = "flat"


class OptionPerUser(WireModel):
    """A price per member of the org, publicly listed."""

    interval: PlanInterval
    price: Amount
    type: Literal["per_user"] = "per_user"


class OptionEnterprise(WireModel):
    """Not listed: the customer talks to sales."""

    type: Literal["enterprise"] = "enterprise"


SubscriptionTierPrice = Annotated[
    OptionFlat | OptionPerUser | OptionEnterprise, Field(discriminator="type")
]
EnterpriseSubscriptionTierPrice = Annotated[OptionFlat | OptionPerUser, Field(discriminator="type")]


class OptionIndividual(WireModel):
    type: Literal["individual"] = "individual"


class OptionOrganization(WireModel):
    saml_sso: bool
    type: Literal["organization"] = "organization"


TierType = Annotated[OptionIndividual | OptionOrganization, Field(discriminator="type")]


class SubscriptionTierFeature(WireModel):
    info: str


class TierTerms(WireModel):
    """What a plan offers, as the catalog file states it."""

    annual_discount: int | None = None
    description: str
    endpoints_included: list[ApiEndpoint] | None = None
    features: list[SubscriptionTierFeature] | None = None
    monthly_pay_as_you_go_api_credits: int = Field(default=0, ge=0)
    name: TierName
    pay_as_you_go_api_credit_price: Amount = Decimal(0)
    price: SubscriptionTierPrice
    share_links: list[ShareLinks] | None = None
    support_tier: SupportTier
    training_data_behavior: TrainingDataBehavior
    type: TierType
    zoo_tools_included: list[ZooTool] | None = None


class ModelingAppSubscriptionTier(TierTerms):
    """A plan as the catalog lists it and as a customer's subscription shows it."""

    monthly_pay_as_you_go_api_credits_monetary_value: Amount

    @classmethod
    def of(
        cls, plan: "Plan", price: OptionFlat | OptionPerUser | None = None
    ) -> "ModelingAppSubscriptionTier":
        """The tier as the API shows it; an org's negotiated price replaces the listed one."""
        terms = plan.terms
        value = terms.monthly_pay_as_you_go_api_credits * terms.pay_as_you_go_api_credit_price
        fields = terms.model_dump(include=set(TierTerms.model_fields))
        fields["price"] = price or terms.price
        return cls.model_validate(
            {**fields, "monthly_pay_as_you_go_api_credits_monetary_value": value}
        )


class CatalogTier(TierTerms):
    """A tier in the catalog file: its public terms plus the rules zoopay applies."""

    # Whether usage past the credits is billed (True) or refused once credits run out.
    allows_overage: StrictBool = False


class ApiPrice(WireModel):
    """What one API call costs: per call, plus per started minute of compute."""

    per_call: Amount = Decimal(0)
    per_minute: Amount = Decimal(0)


class ApiCategoryPrice(ApiPrice):
    # Endpoints (request paths) starting with one of these belong to the category.
    prefixes: list[str] = Field(default_factory=list)


class ApiPriceList(WireModel):
    """Prices by endpoint category; an endpoint of no category pays the default."""

    default: ApiPrice = ApiPrice()
    categories: dict[ApiEndpoint, ApiCategoryPrice] = Field(default_factory=dict)


class ZooProductSubscriptions(WireModel):
    modeling_app: ModelingAppSubscriptionTier

    @classmethod
    def of(
        cls, plan: "Plan", price: OptionFlat | OptionPerUser | None = None
    ) -> "ZooProductSubscriptions":
        return cls(modeling_app=ModelingAppSubscriptionTier.of(plan, price))


class PricingSubscriptions(WireModel):
    """`GET /pricing/subscriptions`: every plan on offer, by product."""

    modeling_app: list[ModelingAppSubscriptionTier]

    @classmethod
    def of(cls, catalog: "Catalog") -> "PricingSubscriptions":
        return cls(modeling_app=[ModelingAppSubscriptionTier.of(plan) for plan in catalog.plans()])
