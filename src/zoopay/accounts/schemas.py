"""Wire models of orgs and their members, field for field those of kittycad 1.2.0."""

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictBool

from zoopay.accounts.service import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    Invitation,
    InvitationStatus,
    Membership,
    OrgRole,
    User,
)
from zoopay.accounts.service import ApiToken as ApiTokenRecord
from zoopay.accounts.service import Org as OrgRecord
from zoopay.accounts.tokens import obfuscated
from zoopay.records import same_named
from zoopay.wire import StoredWireModel, WireModel


class UserOrgRole(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


# An email address as `normalize_email` accepts it, said in the OpenAPI document; where it is
# optional, "" means not given, as the SDK sends it.
Email = Annotated[
    str, Field(json_schema_extra={"pattern": f"^{EMAIL_PATTERN}$", "maxLength": MAX_EMAIL})
]
EmailOrEmpty = Annotated[
    str, Field(json_schema_extra={"pattern": f"^({EMAIL_PATTERN})?$", "maxLength": MAX_EMAIL})
]


class BlockReason(enum.StrEnum):
    MISSING_PAYMENT_METHOD = "missing_payment_method"
    PAYMENT_METHOD_FAILED = "payment_method_failed"


class OrgDetails(StoredWireModel):
    """The parts of an org its admin may set."""

    allow_users_in_domain_to_auto_join: StrictBool | None = None
    billing_email: EmailOrEmpty | None = None
    # The lengths are those of the orgs table's columns.
    domain: str | None = Field(default=None, max_length=255)
    image: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default="", max_length=64)


class Org(BaseModel):
    """An organization."""

    allow_users_in_domain_to_auto_join: bool | None = None
    billing_email: str
    billing_email_verified: datetime | None = None
    block: BlockReason | None = None
    can_train_on_data: bool = False
    created_at: datetime
    domain: str | None = None
    id: str
    image: str | None = None
    name: str | None = None
    phone: str = ""
    stripe_id: str | None = None
    updated_at: datetime

    @classmethod
    def of(cls, org: OrgRecord) -> "Org":
        return cls(**same_named(org, cls))


class AddOrgMember(WireModel):
    email: Email
    role: UserOrgRole


class OrgMember(BaseModel):
    """A member of an organization."""

    company: str | None = None
    created_at: datetime
    discord: str | None = None
    email: str | None = None
    email_verified: datetime | None = None
    first_name: str | None = None
    github: str | None = None
    id: str
    image: str
    last_name: str | None = None
    name: str | None = None
    phone: str = ""
    role: OrgRole
    updated_at: datetime

    @classmethod
    def of(cls, membership: Membership, user: User) -> "OrgMember":
        # Dates and role are the membership's; only email, id and name are the user's.
        return cls(
            **same_named(membership, cls), email=user.email, id=user.id, image="", name=user.name
        )

    @classmethod
    def of_invitation(cls, invitation: Invitation) -> "OrgMember":
        """What POST /org/members answers: the invitation, in the shape the SDK accepts. Built
        only from what the admin sent and the invitation itself, so that it reads the same
        whether or not a user has the email address."""
        return cls(**same_named(invitation, cls), image="")


class UpdateMemberToOrgBody(WireModel):
    """Data for updating a member of an org."""

    role: UserOrgRole


class OrgInvitation(BaseModel):
    """An invitation to join an org (a zoopay extension): the invited user accepts or declines
    it; until then they are not a member."""

    id: str
    org_id: str
    org_name: str | None
    email: str
    role: OrgRole
    status: InvitationStatus
    created_at: datetime
    updated_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, invitation: Invitation) -> "OrgInvitation":
        return cls(**same_named(invitation, cls))


class OrgInvitationResultsPage(BaseModel):
    """A single page of invitations."""

    items: list[OrgInvitation]
    next_page: str | None = None


class OrgMemberResultsPage(BaseModel):
    """A single page of results."""

    items: list[OrgMember]
    next_page: str | None = None


def _shown(record: ApiTokenRecord, secret: str | None) -> dict[str, Any]:
    """The fields a user's token and a service account share; the secret only when created."""
    return {
        "created_at": record.created_at,
        "id": record.id,
        "is_valid": record.is_valid,
        "label": record.label,
        "token": secret or obfuscated(record.hint),
        "updated_at": record.updated_at,
    }


class ApiToken(BaseModel):
    """An API token. Its creation answers the full token, once (kittycad 1.8.0 reads that
    answer as ApiTokenWithFullToken, which has the same fields); every other answer shows
    `zoo_...` and its last 4 characters. `id` is what `/user/api-tokens/{token}` takes."""

    created_at: datetime
    id: str
    is_valid: bool
    label: str | None = None
    token: str
    updated_at: datetime
    user_id: str

    @classmethod
    def of(cls, record: ApiTokenRecord, secret: str | None = None) -> "ApiToken":
        return cls(**_shown(record, secret), user_id=record.owner_id)


class ApiTokenResultsPage(BaseModel):
    """A single page of results."""

    items: list[ApiToken]
    next_page: str | None = None


class ServiceAccount(BaseModel):
    """An org's service account: a token that acts for the org. Shown like an ApiToken; `id`
    is what `/org/service-accounts/{token}` takes."""

    created_at: datetime
    id: str
    is_valid: bool
    label: str | None = None
    org_id: str
    token: str
    updated_at: datetime

    @classmethod
    def of(cls, record: ApiTokenRecord, secret: str | None = None) -> "ServiceAccount":
        return cls(**_shown(record, secret), org_id=record.owner_id)


class ServiceAccountResultsPage(BaseModel):
    """A single page of results."""

    items: list[ServiceAccount]
    next_page: str | None = None
