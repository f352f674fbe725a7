from fastapi import Response

from zoopay.accounts import service
from zoopay.accounts.schemas import AddOrgMember, Org, OrgDetails, OrgMember, OrgMemberResultsPage
from zoopay.api.deps import Conn, CurrentUser, Now, OrgAdmin
from zoopay.api.deps import OrgMember as Member
from zoopay.api.pagination import Page, next_page_token
from zoopay.api.routing import json_router

router = json_router(tags=["orgs"])


@router.post("/org", response_model=Org, status_code=201)
async def create_org(body: OrgDetails, user: CurrentUser, conn: Conn, now: Now) -> Org:
    """Create an org; the caller, who must belong to no org, becomes its admin."""
    details = service.OrgDetails(**{**body.model_dump(), "phone": body.phone or ""})
    return Org.of(await service.create_org(conn, user, details, now))


@router.get("/org", response_model=Org)
async def get_org(member: Member, conn: Conn) -> Org:
    """The caller's org."""
    return Org.of(await service.find_org(conn, member.org_id))


@router.get("/org/members", response_model=OrgMemberResultsPage)
async def list_org_members(admin: OrgAdmin, conn: Conn, page: Page) -> OrgMemberResultsPage:
    """Org admin: the org's members, oldest first by default."""
    rows = await service.list_members(
        conn, admin.org_id, page.limit + 1, page.after, descending=page.descending
    )
    items = [OrgMember.of(membership, user) for membership, user in rows[: page.limit]]
    next_page = next_page_token(rows, page.limit, lambda row: (row[0].created_at, row[0].user_id))
    return OrgMemberResultsPage(items=items, next_page=next_page)


@router.post("/org/members", response_model=OrgMember, status_code=201)
async def create_org_member(body: AddOrgMember, admin: OrgAdmin, conn: Conn, now: Now) -> OrgMember:
    """Org admin: add an existing user to the org."""
    # `find_user` also takes a user id; this field is an email address and nothing else.
    user = await service.find_user(conn, service.normalize_email(body.email))
    role = service.OrgRole(body.role.value)
    membership = await service.add_member(conn, admin.org_id, user, role, now)
    return OrgMember.of(membership, user)


@router.delete("/org/members/{user_id}", status_code=204, response_class=Response)
async def delete_org_member(user_id: str, admin: OrgAdmin, conn: Conn) -> Response:
    """Org admin: remove a member; the last admin cannot be removed."""
    await service.remove_member(conn, admin.org_id, user_id)
    return Response(status_code=204)
