"""Wire models of subscription requests, field for field those of kittycad 1.2.0."""

from pydantic import StrictBool

from zoopay.catalog.schemas import IndividualTierName, OrganizationTierName
from zoopay.wire import WireModel


class ZooProductSubscriptionsUserRequest(WireModel):
    """The tier a user asks for; a null tier means the default, free."""

    modeling_app: IndividualTierName | None = IndividualTierName.FREE
    pay_annually: StrictBool | None = None


class ZooProductSubscriptionsOrgRequest(WireModel):
    """The tier an org asks for; a null tier means the default, team."""

    modeling_app: OrganizationTierName | None = OrganizationTierName.TEAM
    pay_annually: StrictBool | None = None
