"""Wire models of balances, field for field those of kittycad 1.2.0."""

from datetime import datetime

from zoopay.catalog.schemas import SubscriptionTierPrice, ZooProductSubscriptions
from zoopay.money import Amount, Money
from zoopay.wire import WireModel


class CustomerBalance(WireModel):
    """A customer's credits and what they owe."""

    created_at: datetime
    id: str
    map_id: str
    modeling_app_enterprise_price: SubscriptionTierPrice | None = None
    monthly_api_credits_remaining: int
    monthly_api_credits_remaining_monetary_value: Money
    stable_api_credits_remaining: int
    stable_api_credits_remaining_monetary_value: Money
    subscription_details: ZooProductSubscriptions | None = None
    subscription_id: str | None = None
    total_due: Money | None = None
    updated_at: datetime


class UpdatePaymentBalance(WireModel):
    """Absolute amounts for either or both buckets; a missing or null field is unchanged."""

    monthly_api_credits_remaining_monetary_value: Amount | None = None
    stable_api_credits_remaining_monetary_value: Amount | None = None
