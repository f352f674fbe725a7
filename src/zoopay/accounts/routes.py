from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts import service
from zoopay.accounts.schemas import (
    AddOrgMember,
    ApiToken,
    ApiTokenResultsPage,
    Org,
    OrgDetails,
    OrgInvitation,
    OrgInvitationResultsPage,
    OrgMember,
    OrgMemberResultsPage,
    ServiceAccount,
    ServiceAccountResultsPage,
    UpdateMemberToOrgBody,
)
from zoopay.accounts.service import TokenOwner
from zoopay.api.deps import AnyOrg, Conn, CurrentUser, IdInPath, Now, OrgAdmin
from zoopay.api.deps import OrgMember as Member
from zoopay.api.openapi import errors
from zoopay.api.pagination import Page, PageRequest, results_page
from zoopay.api.routing import json_router

P = TypeVar("P")
router = json_router(tags=["orgs"])
# Zoo files tokens under tags of their own: the SDK's `api_tokens` and `service_accounts`.
api_tokens_router = json_router(tags=["api-tokens"])
service_accounts_router = json_router(tags=["service-accounts"])


@router.post("/org", response_model=Org, status_code=201, responses=errors(409))
async def create_org(body: OrgDetails, user: CurrentUser, conn: Conn, now: Now) -> Org:
    """Create an org; the caller, who must belong to no org, becomes its admin."""
    details = service.OrgDetails(**{**body.model_dump(), "phone": body.phone or ""})
    return Org.of(await service.create_org(conn, admin=user, details=details, now=now))


@router.get("/org", response_model=Org)
async def get_org(member: Member, conn: Conn) -> Org:
    """The caller's org."""
    return Org.of(await service.find_org(conn, org_id=member.org_id))


@router.put("/org", response_model=Org)
async def update_org(
    body: OrgDetails, admin: OrgAdmin, user: CurrentUser, conn: Conn, now: Now
) -> Org:
    """Org admin: change the org's details. A field left out or null (and an empty phone or
    billing email, as the SDK sends them) stays as it was."""
    changes = body.model_dump(exclude_unset=True)
    for sent_empty in ("phone", "billing_email"):
        if not changes.get(sent_empty):
            changes.pop(sent_empty, None)
    return Org.of(
        await service.update_org(conn, org_id=admin.org_id, changes=changes, actor=user, now=now)
    )


@router.delete(
    "/org",
    status_code=204,
    response_class=Response,
    responses=errors(409),
)
async def delete_org(admin: OrgAdmin, user: CurrentUser, conn: Conn) -> Response:
    """Org admin: delete the org, once the caller is its only member and it neither owes money
    nor holds stable credits. Its plan ends; its balance and ledger are kept as the record."""
    await service.delete_org(conn, org_id=admin.org_id, actor=user)
    return Response(status_code=204)


@router.get(
    "/org/members",
    response_model=OrgMemberResultsPage,
)
async def list_org_members(admin: OrgAdmin, conn: Conn, page: Page) -> OrgMemberResultsPage:
    """Org admin: the org's members, oldest first by default."""
    rows = await service.list_members(conn, org_id=admin.org_id, **page.window())
    return results_page(
        OrgMemberResultsPage,
        rows,
        page,
        lambda row: OrgMember.of(*row),
        key=lambda row: (row[0].created_at, row[0].user_id),
    )


@router.post(
    "/org/members",
    response_model=OrgMember,
    status_code=201,
    responses=errors(409),
)
async def create_org_member(
    body: AddOrgMember, admin: OrgAdmin, user: CurrentUser, conn: Conn, now: Now
) -> OrgMember:
    """Org admin: invite an email address to the org. No one is added: the invited user joins
    by accepting (POST /user/org-invitations/{id}/accept). The answer is the invitation in
    OrgMember's shape (`id` is the invitation's), the same whether or not a user has the email
    address; inviting it again while pending renews the invitation."""
    role = service.OrgRole(body.role.value)
    invitation = await service.invite(
        conn, org_id=admin.org_id, email=body.email, role=role, actor=user, now=now
    )
    return OrgMember.of_invitation(invitation)


@router.get(
    "/org/members/{user_id}",
    response_model=OrgMember,
)
async def get_org_member(user_id: IdInPath, admin: OrgAdmin, conn: Conn) -> OrgMember:
    """Org admin: one member of the org."""
    membership, member = await service.get_member(conn, org_id=admin.org_id, user_id=user_id)
    return OrgMember.of(membership, member)


@router.put(
    "/org/members/{user_id}",
    response_model=OrgMember,
    responses=errors(404, 409),
)
async def update_org_member(
    user_id: IdInPath,
    body: UpdateMemberToOrgBody,
    admin: OrgAdmin,
    user: CurrentUser,
    conn: Conn,
    now: Now,
) -> OrgMember:
    """Org admin: change a member's role, effective from the next request. The last admin
    cannot be demoted."""
    role = service.OrgRole(body.role.value)
    membership, member = await service.set_role(
        conn, org_id=admin.org_id, user_id=user_id, role=role, actor=user, now=now
    )
    return OrgMember.of(membership, member)


@router.delete(
    "/org/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=errors(404, 409),
)
async def delete_org_member(
    user_id: IdInPath, admin: OrgAdmin, user: CurrentUser, conn: Conn
) -> Response:
    """Org admin: remove a member; the last admin cannot be removed while others remain."""
    await service.remove_member(conn, org_id=admin.org_id, user_id=user_id, actor=user)
    return Response(status_code=204)


@router.delete(
    "/org/membership",
    status_code=204,
    response_class=Response,
    responses=errors(404, 409),
)
async def leave_org(user: CurrentUser, conn: Conn) -> Response:
    """Leave your org (a zoopay extension). Calls you make from then on are your own. The last
    admin cannot leave while anyone else is in the org."""
    await service.leave_org(conn, user=user)
    return Response(status_code=204)


async def _invitations_page(
    conn: Conn,
    page: PageRequest,
    *,
    now: Now,
    org_id: str | None = None,
    email: str | None = None,
) -> OrgInvitationResultsPage:
    rows = await service.list_invitations(
        conn, **page.window(), org_id=org_id, email=email, now=now
    )
    return results_page(OrgInvitationResultsPage, rows, page, OrgInvitation.of)


@router.get(
    "/org/invitations",
    response_model=OrgInvitationResultsPage,
)
async def list_org_invitations(
    admin: OrgAdmin, conn: Conn, page: Page, now: Now
) -> OrgInvitationResultsPage:
    """Org admin: the org's pending invitations, expired ones included (invite again to renew).
    A zoopay extension."""
    return await _invitations_page(conn, page, now=now, org_id=admin.org_id)


@router.delete(
    "/org/invitations/{id}",
    status_code=204,
    response_class=Response,
    responses=errors(404, 409),
)
async def revoke_org_invitation(
    id: IdInPath, admin: OrgAdmin, user: CurrentUser, conn: Conn, now: Now
) -> Response:
    """Org admin: revoke a pending invitation. A zoopay extension."""
    await service.revoke_invitation(
        conn, org_id=admin.org_id, invitation_id=id, actor=user, now=now
    )
    return Response(status_code=204)


@router.get("/user/org-invitations", response_model=OrgInvitationResultsPage)
async def list_my_org_invitations(
    user: CurrentUser, conn: Conn, page: Page, now: Now
) -> OrgInvitationResultsPage:
    """The invitations to the caller's email address that they can still accept. A zoopay
    extension."""
    return await _invitations_page(conn, page, now=now, email=user.email)


@router.post(
    "/user/org-invitations/{id}/accept",
    response_model=OrgMember,
    responses=errors(404, 409),
)
async def accept_org_invitation(id: IdInPath, user: CurrentUser, conn: Conn, now: Now) -> OrgMember:
    """Accept an invitation and join its org with its role; a user already in an org must leave
    it first (409). A zoopay extension."""
    _, membership = await service.respond_to_invitation(
        conn, invitation_id=id, user=user, accept=True, now=now
    )
    assert membership is not None
    return OrgMember.of(membership, user)


@router.post(
    "/user/org-invitations/{id}/decline",
    response_model=OrgInvitation,
    responses=errors(404, 409),
)
async def decline_org_invitation(
    id: IdInPath, user: CurrentUser, conn: Conn, now: Now
) -> OrgInvitation:
    """Decline an invitation. A zoopay extension."""
    invitation, _ = await service.respond_to_invitation(
        conn, invitation_id=id, user=user, accept=False, now=now
    )
    return OrgInvitation.of(invitation)


@router.post(
    "/orgs/{id}/members",
    response_model=OrgMember,
    status_code=201,
    responses=errors(404, 409),
)
async def add_member_to_any_org(org: AnyOrg, body: AddOrgMember, conn: Conn, now: Now) -> OrgMember:
    """Staff: add an existing user to an org at once, as `zoopay orgs add-member` does. A zoopay
    extension."""
    member = await service.find_user(conn, id_or_email=service.normalize_email(body.email))
    membership = await service.add_member(
        conn, org_id=org.id, user=member, role=service.OrgRole(body.role.value), now=now
    )
    return OrgMember.of(membership, member)


# --- tokens: a user's own, and an org's service accounts -------------------------------------

Label = Annotated[
    str | None, Query(max_length=service.MAX_LABEL, description="A name to tell it apart")
]
TokenId = IdInPath  # the token's `id`, never the secret
# An answer that carries a secret: no cache on the way may keep it.
SHOWN_ONCE = "no-store"
# The errors these answer beyond what their dependencies say (api/openapi.py).
USER_TOKEN = errors(404)  # none of the caller's tokens has this id
ORG_TOKEN = errors(404)  # the org has no service account with this id


Shown = Callable[[service.ApiToken], object]
ShownToken = tuple[service.ApiToken, str]


@dataclass(frozen=True)
class TokenShelf:
    """The tokens a caller manages: their own (a user's) or their org's (service accounts)."""

    conn: AsyncConnection
    owner: TokenOwner
    owner_id: str
    now: datetime
    # A user's own tokens are made only while the user is not deleted.
    user: service.User | None = None

    async def page(self, model: Callable[..., P], page: PageRequest, shown: Shown) -> P:
        records = await service.list_tokens(
            self.conn, owner=self.owner, owner_id=self.owner_id, **page.window()
        )
        return results_page(model, records, page, shown)

    async def create(self, label: str | None, response: Response) -> ShownToken:
        response.headers["Cache-Control"] = SHOWN_ONCE
        if self.user is not None:
            return await service.create_user_token(
                self.conn, user=self.user, label=label, now=self.now
            )
        return await service.create_owned_token(
            self.conn, owner=self.owner, owner_id=self.owner_id, label=label, now=self.now
        )

    async def get(self, token_id: str) -> service.ApiToken:
        return await service.get_token(
            self.conn, owner=self.owner, owner_id=self.owner_id, token_id=token_id
        )

    async def revoke(self, token_id: str) -> Response:
        await service.revoke_owned_token(
            self.conn, owner=self.owner, owner_id=self.owner_id, token_id=token_id, now=self.now
        )
        return Response(status_code=204)


async def user_tokens(user: CurrentUser, conn: Conn, now: Now) -> TokenShelf:
    return TokenShelf(conn, TokenOwner.USER, user.id, now, user)


async def org_tokens(admin: OrgAdmin, conn: Conn, now: Now) -> TokenShelf:
    return TokenShelf(conn, TokenOwner.ORG, admin.org_id, now)


# Function-scoped like the connection they hold, which commits when the route returns.
UserTokens = Annotated[TokenShelf, Depends(user_tokens, scope="function")]
OrgTokens = Annotated[TokenShelf, Depends(org_tokens, scope="function")]


@api_tokens_router.get("/user/api-tokens", response_model=ApiTokenResultsPage)
async def list_api_tokens_for_user(tokens: UserTokens, page: Page) -> ApiTokenResultsPage:
    """The caller's API tokens, revoked ones too (`is_valid: false`); oldest first by default."""
    return await tokens.page(ApiTokenResultsPage, page, ApiToken.of)


@api_tokens_router.post("/user/api-tokens", response_model=ApiToken, status_code=201)
async def create_api_token_for_user(
    tokens: UserTokens, response: Response, label: Label = None
) -> ApiToken:
    """A new API token for the caller: the full token is in this answer and nowhere else."""
    return ApiToken.of(*await tokens.create(label, response))


@api_tokens_router.get("/user/api-tokens/{token}", response_model=ApiToken, responses=USER_TOKEN)
async def get_api_token_for_user(token: TokenId, tokens: UserTokens) -> ApiToken:
    """One of the caller's API tokens, by its id; another user's is a 404."""
    return ApiToken.of(await tokens.get(token))


@api_tokens_router.delete(
    "/user/api-tokens/{token}", status_code=204, response_class=Response, responses=USER_TOKEN
)
async def delete_api_token_for_user(token: TokenId, tokens: UserTokens) -> Response:
    """Revoke one of the caller's API tokens: every server refuses it within a second. It stays
    listed, with `is_valid: false`, for the calls that name it."""
    return await tokens.revoke(token)


@service_accounts_router.get("/org/service-accounts", response_model=ServiceAccountResultsPage)
async def list_service_accounts_for_org(tokens: OrgTokens, page: Page) -> ServiceAccountResultsPage:
    """Org admin: the org's service accounts, revoked ones too; oldest first by default."""
    return await tokens.page(ServiceAccountResultsPage, page, ServiceAccount.of)


@service_accounts_router.post(
    "/org/service-accounts", response_model=ServiceAccount, status_code=201
)
async def create_service_account_for_org(
    tokens: OrgTokens, response: Response, label: Label = None
) -> ServiceAccount:
    """Org admin: a token that acts for the org; it may read the org's balance and plan and
    nothing else. The full token is in this answer and nowhere else."""
    return ServiceAccount.of(*await tokens.create(label, response))


@service_accounts_router.get(
    "/org/service-accounts/{token}", response_model=ServiceAccount, responses=ORG_TOKEN
)
async def get_service_account_for_org(token: TokenId, tokens: OrgTokens) -> ServiceAccount:
    """Org admin: one of the org's service accounts, by its id; another org's is a 404."""
    return ServiceAccount.of(await tokens.get(token))


@service_accounts_router.delete(
    "/org/service-accounts/{token}", status_code=204, response_class=Response, responses=ORG_TOKEN
)
async def delete_service_account_for_org(token: TokenId, tokens: OrgTokens) -> Response:
    """Org admin: revoke a service account; every server refuses it within a second."""
    return await tokens.revoke(token)
