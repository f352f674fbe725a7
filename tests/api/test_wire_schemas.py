"""The compatible models carry exactly the fields of their kittycad 1.2.0 schemas."""

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from tests.support.reference import reference_fields, reference_schema
from zoopay.accounts.schemas import (
    AddOrgMember,
    Org,
    OrgDetails,
    OrgMember,
    OrgMemberResultsPage,
)
from zoopay.api.errors import Error
from zoopay.billing.schemas import CustomerBalance, UpdatePaymentBalance
from zoopay.catalog.schemas import (
    EnterpriseSubscriptionTierPrice,
    ModelingAppSubscriptionTier,
    OptionFlat,
    OptionOrganization,
    OptionPerUser,
    ZooProductSubscriptions,
)
from zoopay.invoicing.schemas import Coupon, Discount, Invoice, InvoiceLineItem
from zoopay.subscriptions.schemas import (
    ZooProductSubscriptionsOrgRequest,
    ZooProductSubscriptionsUserRequest,
)

MODELS: list[tuple[str, type[BaseModel]]] = [
    ("CustomerBalance", CustomerBalance),
    ("UpdatePaymentBalance", UpdatePaymentBalance),
    ("ZooProductSubscriptions", ZooProductSubscriptions),
    ("ZooProductSubscriptionsOrgRequest", ZooProductSubscriptionsOrgRequest),
    ("ZooProductSubscriptionsUserRequest", ZooProductSubscriptionsUserRequest),
    ("ModelingAppSubscriptionTier", ModelingAppSubscriptionTier),
    ("Org", Org),
    ("OrgDetails", OrgDetails),
    ("OrgMember", OrgMember),
    ("OrgMemberResultsPage", OrgMemberResultsPage),
    ("AddOrgMember", AddOrgMember),
    ("Error", Error),
    ("Invoice", Invoice),
    ("InvoiceLineItem", InvoiceLineItem),
    ("Discount", Discount),
    ("Coupon", Coupon),
]


@pytest.mark.parametrize(("name", "model"), MODELS, ids=[name for name, _ in MODELS])
def test_fields_equal_the_reference_schema(name: str, model: type[BaseModel]) -> None:
    assert set(model.model_fields) == reference_fields(name)


def test_nested_price_and_type_options_match() -> None:
    defs = reference_schema("CustomerBalance")["$defs"]
    assert set(OptionFlat.model_fields) == set(defs["OptionFlat"]["properties"])
    assert set(OptionPerUser.model_fields) == set(defs["OptionPerUser"]["properties"])
    assert set(OptionOrganization.model_fields) == set(defs["OptionOrganization"]["properties"])


def test_enterprise_price_accepts_flat_and_per_user_only() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(EnterpriseSubscriptionTierPrice)
    mapping = reference_schema("EnterpriseSubscriptionTierPrice")["discriminator"]["mapping"]
    assert set(mapping) == {"flat", "per_user"}
    price = adapter.validate_python({"type": "per_user", "interval": "month", "price": "12.5"})
    assert adapter.dump_python(price, mode="json") == {
        "type": "per_user",
        "interval": "month",
        "price": "12.50",
    }
