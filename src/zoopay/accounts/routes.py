from fastapi import Response

from zoopay.accounts import service
from zoopay.accounts.schemas import (
    AddOrgMember,
    Org,
    OrgDetails,
    OrgInvitation,
    OrgInvitationResultsPage,
    OrgMember,
    OrgMemberResultsPage,
    UpdateMemberToOrgBody,
)
from zoopay.api.deps import Conn, CurrentUser, Now, OrgAdmin, StaffUser
from zoopay.api.deps import OrgMember as Member
from zoopay.api.errors import error_responses
from zoopay.api.pagination import Page, PageRequest, next_page_token
from zoopay.api.routing import json_router

router = json_router(tags=["orgs"])

NOT_AN_ADMIN = {403: "Not an admin of the org"}
NO_ORG = {404: "The caller belongs to no org"}
CONFLICT = {409: "Refused: see the message"}


@router.post("/org", response_model=Org, status_code=201, responses=error_responses(CONFLICT))
async def create_org(body: OrgDetails, user: CurrentUser, conn: Conn, now: Now) -> Org:
    """Create an org; the caller, who must belong to no org, becomes its admin."""
    details = service.OrgDetails(**{**body.model_dump(), "phone": body.phone or ""})
    return Org.of(await service.create_org(conn, user, details, now))


@router.get("/org", response_model=Org, responses=error_responses(NO_ORG))
async def get_org(member: Member, conn: Conn) -> Org:
    """The caller's org."""
    return Org.of(await service.find_org(conn, member.org_id))


@router.put("/org", response_model=Org, responses=error_responses({**NOT_AN_ADMIN, **NO_ORG}))
async def update_org(
    body: OrgDetails, admin: OrgAdmin, user: CurrentUser, conn: Conn, now: Now
) -> Org:
    """Org admin: change the org's details. A field left out or null (and an empty phone, the
    SDK's default) stays as it was."""
    changes = body.model_dump(exclude_unset=True)
    if not changes.get("phone"):
        changes.pop("phone", None)
    return Org.of(await service.update_org(conn, admin.org_id, changes, actor=user, now=now))


@router.delete(
    "/org",
    status_code=204,
    response_class=Response,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG, **CONFLICT}),
)
async def delete_org(admin: OrgAdmin, user: CurrentUser, conn: Conn) -> Response:
    """Org admin: delete the org, once the caller is its only member and it neither owes money
    nor holds stable credits. Its plan ends; its balance and ledger are kept as the record."""
    await service.delete_org(conn, admin.org_id, actor=user)
    return Response(status_code=204)


@router.get(
    "/org/members",
    response_model=OrgMemberResultsPage,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG}),
)
async def list_org_members(admin: OrgAdmin, conn: Conn, page: Page) -> OrgMemberResultsPage:
    """Org admin: the org's members, oldest first by default."""
    rows = await service.list_members(
        conn, admin.org_id, page.limit + 1, page.after, descending=page.descending
    )
    items = [OrgMember.of(membership, user) for membership, user in rows[: page.limit]]
    next_page = next_page_token(rows, page.limit, lambda row: (row[0].created_at, row[0].user_id))
    return OrgMemberResultsPage(items=items, next_page=next_page)


@router.post(
    "/org/members",
    response_model=OrgMember,
    status_code=201,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG, 409: "Already a member of this org"}),
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
        conn, admin.org_id, body.email, role=role, actor=user, now=now
    )
    return OrgMember.of_invitation(invitation)


@router.get(
    "/org/members/{user_id}",
    response_model=OrgMember,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG}),
)
async def get_org_member(user_id: str, admin: OrgAdmin, conn: Conn) -> OrgMember:
    """Org admin: one member of the org."""
    membership, member = await service.get_member(conn, admin.org_id, user_id)
    return OrgMember.of(membership, member)


@router.put(
    "/org/members/{user_id}",
    response_model=OrgMember,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG, 409: "The last admin"}),
)
async def update_org_member(
    user_id: str,
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
        conn, admin.org_id, user_id, role=role, actor=user, now=now
    )
    return OrgMember.of(membership, member)


@router.delete(
    "/org/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG, 409: "The last admin"}),
)
async def delete_org_member(
    user_id: str, admin: OrgAdmin, user: CurrentUser, conn: Conn
) -> Response:
    """Org admin: remove a member; the last admin cannot be removed while others remain."""
    await service.remove_member(conn, admin.org_id, user_id, actor=user)
    return Response(status_code=204)


@router.delete(
    "/org/membership",
    status_code=204,
    response_class=Response,
    responses=error_responses({**NO_ORG, 409: "The last admin of an org with other members"}),
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
        page.limit + 1,
        page.after,
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
    responses=error_responses({**NOT_AN_ADMIN, **NO_ORG}),
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
    responses=error_responses(
        {**NOT_AN_ADMIN, **NO_ORG, 409: "Already accepted, declined or revoked"},
    ),
)
async def revoke_org_invitation(
    id: str, admin: OrgAdmin, user: CurrentUser, conn: Conn, now: Now
) -> Response:
    """Org admin: revoke a pending invitation. A zoopay extension."""
    await service.revoke_invitation(conn, admin.org_id, id, actor=user, now=now)
    return Response(status_code=204)


@router.get("/user/org-invitations", response_model=OrgInvitationResultsPage)
async def list_my_org_invitations(
    user: CurrentUser, conn: Conn, page: Page, now: Now
) -> OrgInvitationResultsPage:
    """The invitations to the caller's email address that they can still accept. A zoopay
    extension."""
    return await _invitations_page(conn, page, now=now, email=user.email)


_RESPOND_ERRORS = {
    404: "No such invitation to the caller",
    409: "Decided, expired, or (accepting) the caller is already in an org",
}


@router.post(
    "/user/org-invitations/{id}/accept",
    response_model=OrgMember,
    responses=error_responses(_RESPOND_ERRORS),
)
async def accept_org_invitation(id: str, user: CurrentUser, conn: Conn, now: Now) -> OrgMember:
    """Accept an invitation and join its org with its role; a user already in an org must leave
    it first (409). A zoopay extension."""
    _, membership = await service.respond_to_invitation(conn, id, user=user, accept=True, now=now)
    assert membership is not None
    return OrgMember.of(membership, user)


@router.post(
    "/user/org-invitations/{id}/decline",
    response_model=OrgInvitation,
    responses=error_responses(_RESPOND_ERRORS),
)
async def decline_org_invitation(id: str, user: CurrentUser, conn: Conn, now: Now) -> OrgInvitation:
    """Decline an invitation. A zoopay extension."""
    invitation, _ = await service.respond_to_invitation(conn, id, user=user, accept=False, now=now)
    return OrgInvitation.of(invitation)


@router.post(
    "/orgs/{id}/members",
    response_model=OrgMember,
    status_code=201,
    responses=error_responses(
        {
            403: "Not staff",
            404: "No such org or user",
            409: "The user already belongs to an org",
        }
    ),
)
async def add_member_to_any_org(
    id: str, body: AddOrgMember, staff: StaffUser, conn: Conn, now: Now
) -> OrgMember:
    """Staff: add an existing user to an org at once, as `zoopay orgs add-member` does. A zoopay
    extension."""
    org = await service.find_org(conn, id)
    member = await service.find_user(conn, service.normalize_email(body.email))
    membership = await service.add_member(
        conn, org.id, member, service.OrgRole(body.role.value), now
    )
    return OrgMember.of(membership, member)
