"""Wire models of balances, field for field those of kittycad 1.2.0."""

from datetime import datetime

from zoopay.billing.service import BalanceStatement
from zoopay.catalog.schemas import SubscriptionTierPrice, ZooProductSubscriptions
from zoopay.money import Amount, Money, credits_for, from_micros
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

    @classmethod
    def of(cls, statement: BalanceStatement, include_total_due: bool) -> "CustomerBalance":
        balance, price = statement.balance, statement.credit_price_micros
        subscribed = statement.subscribed
        return cls(
            created_at=balance.created_at,
            id=balance.id,
            map_id=balance.customer.id,
            modeling_app_enterprise_price=statement.enterprise_price,
            monthly_api_credits_remaining=credits_for(balance.monthly_micros, price),
            monthly_api_credits_remaining_monetary_value=from_micros(balance.monthly_micros),
            stable_api_credits_remaining=credits_for(balance.stable_micros, price),
            stable_api_credits_remaining_monetary_value=from_micros(balance.stable_micros),
            subscription_details=(
                ZooProductSubscriptions.of(subscribed.plan, subscribed.price)
                if subscribed
                else None
            ),
            subscription_id=statement.subscription.id if statement.subscription else None,
            total_due=from_micros(balance.total_due_micros) if include_total_due else None,
            updated_at=balance.updated_at,
        )


class UpdatePaymentBalance(WireModel):
    """Absolute amounts for either or both buckets; a missing or null field is unchanged."""

    monthly_api_credits_remaining_monetary_value: Amount | None = None
    stable_api_credits_remaining_monetary_value: Amount | None = None
