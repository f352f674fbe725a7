from typing import Annotated

from fastapi import Query, Response

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
from zoopay.api.pagination import Page, PageRequest, next_page_token
from zoopay.api.routing import json_router

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
    rows = await service.list_members(
        conn,
        org_id=admin.org_id,
        limit=page.limit + 1,
        after=page.after,
        descending=page.descending,
    )
    items = [OrgMember.of(membership, user) for membership, user in rows[: page.limit]]
    next_page = next_page_token(rows, page.limit, lambda row: (row[0].created_at, row[0].user_id))
    return OrgMemberResultsPage(items=items, next_page=next_page)


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
        conn,
        limit=page.limit + 1,
        after=page.after,
        descending=page.descending,
        org_id=org_id,
        email=email,
        now=now,
    )
    return OrgInvitationResultsPage(
        items=[OrgInvitation.of(row) for row in rows[: page.limit]],
        next_page=next_page_token(rows, page.limit, lambda row: (row.created_at, row.id)),
    )


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


async def _tokens_page(
    conn: Conn, owner: TokenOwner, owner_id: str, page: Page
) -> list[service.ApiToken]:
    return await service.list_tokens(
        conn,
        owner=owner,
        owner_id=owner_id,
        limit=page.limit + 1,
        after=page.after,
        descending=page.descending,
    )


def _next(records: list[service.ApiToken], page: Page) -> str | None:
    return next_page_token(records, page.limit, lambda record: (record.created_at, record.id))


@api_tokens_router.get(
    "/user/api-tokens",
    response_model=ApiTokenResultsPage,
)
async def list_api_tokens_for_user(
    user: CurrentUser, conn: Conn, page: Page
) -> ApiTokenResultsPage:
    """The caller's API tokens, revoked ones too (`is_valid: false`); oldest first by default."""
    records = await _tokens_page(conn, TokenOwner.USER, user.id, page)
    items = [ApiToken.of(record) for record in records[: page.limit]]
    return ApiTokenResultsPage(items=items, next_page=_next(records, page))


@api_tokens_router.post(
    "/user/api-tokens",
    response_model=ApiToken,
    status_code=201,
)
async def create_api_token_for_user(
    user: CurrentUser, conn: Conn, now: Now, response: Response, label: Label = None
) -> ApiToken:
    """A new API token for the caller: the full token is in this answer and nowhere else."""
    response.headers["Cache-Control"] = SHOWN_ONCE
    record, secret = await service.create_user_token(conn, user=user, label=label, now=now)
    return ApiToken.of(record, secret)


@api_tokens_router.get("/user/api-tokens/{token}", response_model=ApiToken, responses=USER_TOKEN)
async def get_api_token_for_user(token: TokenId, user: CurrentUser, conn: Conn) -> ApiToken:
    """One of the caller's API tokens, by its id; another user's is a 404."""
    return ApiToken.of(
        await service.get_token(conn, owner=TokenOwner.USER, owner_id=user.id, token_id=token)
    )


@api_tokens_router.delete(
    "/user/api-tokens/{token}",
    status_code=204,
    response_class=Response,
    responses=USER_TOKEN,
)
async def delete_api_token_for_user(
    token: TokenId, user: CurrentUser, conn: Conn, now: Now
) -> Response:
    """Revoke one of the caller's API tokens: every server refuses it within a second. It stays
    listed, with `is_valid: false`, for the calls that name it."""
    await service.revoke_owned_token(
        conn, owner=TokenOwner.USER, owner_id=user.id, token_id=token, now=now
    )
    return Response(status_code=204)


@service_accounts_router.get(
    "/org/service-accounts",
    response_model=ServiceAccountResultsPage,
)
async def list_service_accounts_for_org(
    admin: OrgAdmin, conn: Conn, page: Page
) -> ServiceAccountResultsPage:
    """Org admin: the org's service accounts, revoked ones too; oldest first by default."""
    records = await _tokens_page(conn, TokenOwner.ORG, admin.org_id, page)
    items = [ServiceAccount.of(record) for record in records[: page.limit]]
    return ServiceAccountResultsPage(items=items, next_page=_next(records, page))


@service_accounts_router.post(
    "/org/service-accounts",
    response_model=ServiceAccount,
    status_code=201,
)
async def create_service_account_for_org(
    admin: OrgAdmin, conn: Conn, now: Now, response: Response, label: Label = None
) -> ServiceAccount:
    """Org admin: a token that acts for the org; it may read the org's balance and plan and
    nothing else. The full token is in this answer and nowhere else."""
    response.headers["Cache-Control"] = SHOWN_ONCE
    record, secret = await service.create_owned_token(
        conn, owner=TokenOwner.ORG, owner_id=admin.org_id, label=label, now=now
    )
    return ServiceAccount.of(record, secret)


@service_accounts_router.get(
    "/org/service-accounts/{token}",
    response_model=ServiceAccount,
    responses=ORG_TOKEN,
)
async def get_service_account_for_org(
    token: TokenId, admin: OrgAdmin, conn: Conn
) -> ServiceAccount:
    """Org admin: one of the org's service accounts, by its id; another org's is a 404."""
    record = await service.get_token(
        conn, owner=TokenOwner.ORG, owner_id=admin.org_id, token_id=token
    )
    return ServiceAccount.of(record)


@service_accounts_router.delete(
    "/org/service-accounts/{token}",
    status_code=204,
    response_class=Response,
    responses=ORG_TOKEN,
)
async def delete_service_account_for_org(
    token: TokenId, admin: OrgAdmin, conn: Conn, now: Now
) -> Response:
    """Org admin: revoke a service account; every server refuses it within a second."""
    await service.revoke_owned_token(
        conn, owner=TokenOwner.ORG, owner_id=admin.org_id, token_id=token, now=now
    )
    return Response(status_code=204)
