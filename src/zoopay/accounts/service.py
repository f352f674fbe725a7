"""People and organizations: users, their API tokens, orgs and their members."""

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.tokens import new_token, token_hash, token_hint
from zoopay.catalog.service import Catalog
from zoopay.db.keyset import ordered_after
from zoopay.db.tables import api_tokens, org_invitations, org_members, orgs, users
from zoopay.errors import BadRequest, Conflict, Forbidden, NotFound, quoted
from zoopay.ledger.service import Customer, lock_balance, open_balance
from zoopay.money import format_micros
from zoopay.payments.service import unpaid_invoice
from zoopay.subscriptions.service import end_subscription, start_free_plan
from zoopay.wire import parse_uuid

# No spaces or control characters (PostgreSQL text cannot even hold NUL). Spelled out, not `\s`:
# Python's `\s` and a JSON Schema (ECMA-262) validator's are different sets, and the OpenAPI
# document must say exactly what this accepts.
_NOT_IN_EMAIL = r"@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL_PATTERN = f"[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+"
MAX_EMAIL = 320
# The widths of their columns, which the API's models bound too; the `zoopay` command, which
# has no model, is held to them here.
MAX_NAME = 200
MAX_SERVICE_NAME = 100
_EMAIL = re.compile(f"^{EMAIL_PATTERN}$")


class OrgRole(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    is_staff: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def customer(self) -> Customer:
        return Customer("user", self.id)


@dataclass(frozen=True)
class Org:
    id: str
    name: str | None
    billing_email: str
    domain: str | None
    image: str | None
    phone: str
    allow_users_in_domain_to_auto_join: bool | None
    created_at: datetime
    updated_at: datetime

    @property
    def customer(self) -> Customer:
        return Customer("org", self.id)


@dataclass(frozen=True)
class OrgDetails:
    """What a user may set on an org."""

    name: str | None = None
    billing_email: str | None = None
    domain: str | None = None
    image: str | None = None
    phone: str = ""
    allow_users_in_domain_to_auto_join: bool | None = None


@dataclass(frozen=True)
class Membership:
    org_id: str
    user_id: str
    role: OrgRole
    created_at: datetime
    updated_at: datetime

    @property
    def org(self) -> Customer:
        return Customer("org", self.org_id)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > MAX_EMAIL or not _encodable(email):
        raise BadRequest(f"{quoted(email)} is not an email address")
    return email


def _encodable(text: str) -> bool:
    """Not a lone surrogate (JSON may escape one, `\\ud800`): no database encodes it. Checked
    apart from the pattern, whose ECMA-262 reading sees a character beyond U+FFFF as two."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def create_user(
    conn: AsyncConnection,
    *,
    catalog: Catalog,
    email: str,
    now: datetime,
    name: str | None = None,
    is_staff: bool = False,
) -> User:
    """A new user, on the free plan with its monthly grant."""
    if name is not None and len(name) > MAX_NAME:
        raise BadRequest(f"a name is at most {MAX_NAME} characters")
    user = User(str(uuid.uuid4()), normalize_email(email), name, is_staff, now, now)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(users).values(**user.__dict__))
    except IntegrityError:
        raise Conflict(f"a user with email {user.email} already exists") from None
    balance = await open_balance(conn, customer=user.customer, now=now)
    await start_free_plan(conn, catalog=catalog, balance=balance, actor=user.id, now=now)
    return user


@dataclass(frozen=True)
class Principal:
    """Who presented a token: a user, an org's service account, or a service that reports
    usage. Cached for at most a fraction of a second (accounts.cache): it may go stale."""

    token_id: str
    user: User | None
    service_name: str | None
    org_id: str | None = None

    @property
    def may_meter(self) -> bool:
        """Services and staff may report usage and ask for authorizations."""
        return self.service_name is not None or (self.user is not None and self.user.is_staff)


class TokenOwner(enum.StrEnum):
    USER = "user"
    ORG = "org"  # an org's service account
    SERVICE = "service"  # a product that reports usage, named by the operator


_OWNER_COLUMNS = {
    TokenOwner.USER: api_tokens.c.user_id,
    TokenOwner.ORG: api_tokens.c.org_id,
    TokenOwner.SERVICE: api_tokens.c.service_name,
}


@dataclass(frozen=True)
class ApiToken:
    """A token as its owner sees it: never the secret, of which only the hash is stored."""

    id: str
    owner: TokenOwner
    owner_id: str
    label: str | None
    hint: str | None
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None

    @property
    def is_valid(self) -> bool:
        return self.revoked_at is None


MAX_LABEL = 200


async def create_token(conn: AsyncConnection, *, user: User, now: datetime) -> str:
    """A new API token for the user; only its hash is kept."""
    return (await create_user_token(conn, user=user, label=None, now=now))[1]


async def create_user_token(
    conn: AsyncConnection, *, user: User, label: str | None, now: datetime
) -> tuple[ApiToken, str]:
    if user.deleted_at is not None:
        raise Conflict(f"{user.email} is deleted")
    return await create_owned_token(
        conn, owner=TokenOwner.USER, owner_id=user.id, label=label, now=now
    )


async def create_owned_token(
    conn: AsyncConnection, *, owner: TokenOwner, owner_id: str, label: str | None, now: datetime
) -> tuple[ApiToken, str]:
    """A new token of a user, an org (a service account) or a service, and its secret, which
    is shown once: only its hash is kept."""
    if label is not None and len(label) > MAX_LABEL:
        raise BadRequest(f"label must be at most {MAX_LABEL} characters")
    if label is not None and "\x00" in label:
        raise BadRequest("label must not contain NUL characters")
    if owner == TokenOwner.SERVICE:
        owner_id = owner_id.strip()
        if not owner_id:
            raise BadRequest("a service needs a name")
        if len(owner_id) > MAX_SERVICE_NAME:
            raise BadRequest(f"a service's name is at most {MAX_SERVICE_NAME} characters")
    token = new_token()
    record = ApiToken(str(uuid.uuid4()), owner, owner_id, label, token_hint(token), now, now, None)
    await conn.execute(
        insert(api_tokens).values(
            id=record.id,
            token_hash=token_hash(token),
            label=label,
            hint=record.hint,
            created_at=now,
            updated_at=now,
            **{_OWNER_COLUMNS[owner].name: owner_id},
        )
    )
    return record, token


async def create_service_token(conn: AsyncConnection, *, service_name: str, now: datetime) -> str:
    """A token for a service: it may report usage and ask for authorizations, nothing else."""
    owner = TokenOwner.SERVICE
    return (
        await create_owned_token(conn, owner=owner, owner_id=service_name, label=None, now=now)
    )[1]


def _owned_by(owner: TokenOwner, owner_id: str) -> ColumnElement[bool]:
    return _OWNER_COLUMNS[owner] == owner_id


def _api_token(row: RowMapping) -> ApiToken:
    owner = next(owner for owner, column in _OWNER_COLUMNS.items() if row[column.name])
    return ApiToken(
        row["id"],
        owner,
        row[_OWNER_COLUMNS[owner].name],
        row["label"],
        row["hint"],
        row["created_at"],
        row["updated_at"],
        row["revoked_at"],
    )


async def list_tokens(
    conn: AsyncConnection,
    *,
    owner: TokenOwner,
    owner_id: str,
    limit: int,
    after: tuple[datetime, str] | None,
    descending: bool,
) -> list[ApiToken]:
    """`limit` of the owner's tokens, revoked ones too, in (created_at, id) order."""
    query = select(api_tokens).where(_owned_by(owner, owner_id)).limit(limit)
    query = ordered_after(
        query, (api_tokens.c.created_at, api_tokens.c.id), after, descending=descending
    )
    return [_api_token(row) for row in (await conn.execute(query)).mappings()]


async def get_token(
    conn: AsyncConnection, *, owner: TokenOwner, owner_id: str, token_id: str
) -> ApiToken:
    """One of the owner's tokens; another owner's is as unknown as one that never existed."""
    query = select(api_tokens).where(
        api_tokens.c.id == parse_uuid(token_id, "token"), _owned_by(owner, owner_id)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no token {token_id}")
    return _api_token(row)


async def revoke_owned_token(
    conn: AsyncConnection, *, owner: TokenOwner, owner_id: str, token_id: str, now: datetime
) -> ApiToken:
    """Revoke one of the owner's tokens (again is no error); it stops working everywhere within
    the token cache's bound."""
    await get_token(conn, owner=owner, owner_id=owner_id, token_id=token_id)
    return await revoke_token(conn, token_id=token_id, now=now)


async def revoke_token(conn: AsyncConnection, *, token_id: str, now: datetime) -> ApiToken:
    """The operator's revocation: any token, a user's, an org's or a service's."""
    token_id = parse_uuid(token_id, "token")
    condition = api_tokens.c.id == token_id
    await conn.execute(
        api_tokens.update()
        .where(condition, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
    )
    row = (await conn.execute(select(api_tokens).where(condition))).mappings().first()
    if row is None:
        raise NotFound(f"no token {token_id}")
    return _api_token(row)


async def authenticate(conn: AsyncConnection, *, token: str) -> Principal | None:
    """Who holds this token, if it is valid: not revoked, and not a deleted user's."""
    query = (
        select(
            api_tokens.c.id.label("token_id"),
            api_tokens.c.service_name,
            api_tokens.c.org_id.label("token_org_id"),
            users,
        )
        .select_from(api_tokens.outerjoin(users, api_tokens.c.user_id == users.c.id))
        .where(
            api_tokens.c.token_hash == token_hash(token),
            api_tokens.c.revoked_at.is_(None),
            users.c.deleted_at.is_(None),
        )
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    user_fields = {name: row[name] for name in User.__dataclass_fields__}
    user = User(**user_fields) if row["id"] is not None else None
    return Principal(row["token_id"], user, row["service_name"], row["token_org_id"])


async def delete_user(conn: AsyncConnection, *, user: User, now: datetime) -> User:
    """Delete a user: their tokens stop working; their row, ledger and calls stay for audit.
    They leave their org, as by `leave_org`: a deleted member's seat (billed per member) is one
    no one can use, and an org's last admin is not deleted while others are in it (409)."""
    if user.deleted_at is not None:
        return user
    if await membership_of(conn, user=user) is not None:
        await leave_org(conn, user=user)
    await conn.execute(
        users.update()
        .where(users.c.id == user.id, users.c.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
    )
    await conn.execute(
        api_tokens.update()
        .where(api_tokens.c.user_id == user.id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
    )
    return replace(user, deleted_at=now, updated_at=now)


async def set_staff(conn: AsyncConnection, *, user: User, is_staff: bool, now: datetime) -> User:
    """Grant or take away staff rights; every server sees it within the token cache's bound."""
    # Decided by the row, not by `user`, which may be stale.
    await conn.execute(
        users.update()
        .where(users.c.id == user.id, users.c.is_staff != is_staff)
        .values(is_staff=is_staff, updated_at=now)
    )
    return replace(user, is_staff=is_staff, updated_at=now)


async def find_user(conn: AsyncConnection, *, id_or_email: str) -> User:
    """A user named by UUID or by email address."""
    if "@" in id_or_email:
        condition = users.c.email == normalize_email(id_or_email)
    else:
        condition = users.c.id == parse_uuid(id_or_email, "user")
    row = (await conn.execute(select(users).where(condition))).mappings().first()
    if row is None:
        raise NotFound(f"no user {quoted(id_or_email)}")
    return User(**row)


async def any_staff(conn: AsyncConnection) -> bool:
    query = select(func.count()).select_from(users).where(users.c.is_staff.is_(True))
    return bool((await conn.execute(query)).scalar_one())


async def membership_of(conn: AsyncConnection, *, user: User) -> Membership | None:
    row = (
        (await conn.execute(select(org_members).where(org_members.c.user_id == user.id)))
        .mappings()
        .first()
    )
    return Membership(**row) if row else None


async def find_org(conn: AsyncConnection, *, org_id: str) -> Org:
    query = select(orgs).where(orgs.c.id == parse_uuid(org_id, "org"))
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no org {org_id}")
    return Org(**row)


async def create_org(
    conn: AsyncConnection, *, admin: User, details: OrgDetails, now: datetime
) -> Org:
    """A new org with `admin` as its first admin, a zero balance and no subscription."""
    if details.name is not None and len(details.name) > MAX_NAME:
        raise BadRequest(f"an org's name is at most {MAX_NAME} characters")
    if await membership_of(conn, user=admin) is not None:
        raise Conflict(f"{admin.email} already belongs to an org")
    billing_email = normalize_email(details.billing_email or admin.email)
    org = Org(
        id=str(uuid.uuid4()),
        **{**details.__dict__, "billing_email": billing_email},
        created_at=now,
        updated_at=now,
    )
    await conn.execute(insert(orgs).values(**org.__dict__))
    await _insert_member(conn, org_id=org.id, user=admin, role=OrgRole.ADMIN, now=now)
    await open_balance(conn, customer=org.customer, now=now)
    return org


async def add_member(
    conn: AsyncConnection, *, org_id: str, user: User, role: OrgRole, now: datetime
) -> Membership:
    """Put a user in an org at once: an operator's or staff's action, or an accepted invitation."""
    existing = await membership_of(conn, user=user)
    if existing is not None:
        where = "this org" if existing.org_id == org_id else "another org"
        raise Conflict(f"{user.email} already belongs to {where}")
    return await _insert_member(conn, org_id=org_id, user=user, role=role, now=now)


async def _insert_member(
    conn: AsyncConnection, *, org_id: str, user: User, role: OrgRole, now: datetime
) -> Membership:
    if user.deleted_at is not None:
        # They can hold no token and sign in nowhere: a seat, or an org, no one could use.
        raise Conflict(f"{user.email} is deleted")
    member = Membership(org_id, user.id, role, now, now)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(org_members).values(**member.__dict__))
    except IntegrityError:
        raise Conflict(f"{user.email} already belongs to an org") from None
    return member


async def _lock_org(conn: AsyncConnection, *, org_id: str, exclusive: bool = False) -> None:
    """Membership changes of one org take turns: two admins removing or demoting each other at
    once would each count the other still there (write skew on PostgreSQL) and leave none."""
    query = select(orgs.c.id).where(orgs.c.id == org_id)
    found = (await conn.execute(query.with_for_update(key_share=not exclusive))).first()
    if found is None:
        raise NotFound(f"no org {org_id}")


async def _require_admin(conn: AsyncConnection, *, org_id: str, actor: User) -> None:
    """Checked again inside the transaction, after the lock: a demotion or removal that
    committed meanwhile counts at once (the same answers as the route's own check)."""
    query = select(org_members.c.role).where(
        org_members.c.org_id == org_id, org_members.c.user_id == actor.id
    )
    role = (await conn.execute(query)).scalar()
    if role is None:
        raise NotFound("you do not belong to an org")
    if role != OrgRole.ADMIN.value:
        raise Forbidden("only an admin of the org may do this")


async def _locked_member(conn: AsyncConnection, *, org_id: str, user_id: str) -> Membership:
    query = select(org_members).where(
        org_members.c.org_id == org_id, org_members.c.user_id == parse_uuid(user_id, "user")
    )
    row = (await conn.execute(query.with_for_update())).mappings().first()
    if row is None:
        raise NotFound(f"no member {quoted(user_id)} in this org")
    return Membership(**{**row, "role": OrgRole(row["role"])})


async def remove_member(conn: AsyncConnection, *, org_id: str, user_id: str, actor: User) -> None:
    """An admin removes a member (or themselves)."""
    await _lock_org(conn, org_id=org_id)
    await _require_admin(conn, org_id=org_id, actor=actor)
    await _remove(conn, member=await _locked_member(conn, org_id=org_id, user_id=user_id))


async def leave_org(conn: AsyncConnection, *, user: User) -> None:
    """A member leaves their org: their calls from now on are their own."""
    membership = await membership_of(conn, user=user)
    if membership is None:
        raise NotFound("you do not belong to an org")
    await _lock_org(conn, org_id=membership.org_id)
    await _remove(
        conn, member=await _locked_member(conn, org_id=membership.org_id, user_id=user.id)
    )


async def _remove(conn: AsyncConnection, *, member: Membership) -> None:
    """The last admin stays while anyone else is in the org: it would be left with no admin."""
    last_admin = (
        member.role == OrgRole.ADMIN and await _admin_count(conn, org_id=member.org_id) == 1
    )
    if last_admin and await _member_count(conn, org_id=member.org_id) > 1:
        raise Conflict(
            "an org must keep at least one admin while it has members: make another member"
            " admin first"
        )
    await conn.execute(org_members.delete().where(org_members.c.user_id == member.user_id))


async def set_role(
    conn: AsyncConnection, *, org_id: str, user_id: str, role: OrgRole, actor: User, now: datetime
) -> tuple[Membership, User]:
    """An admin changes a member's role; it counts from the next request (roles are never
    cached). The last admin cannot be demoted."""
    await _lock_org(conn, org_id=org_id)
    await _require_admin(conn, org_id=org_id, actor=actor)
    member = await _locked_member(conn, org_id=org_id, user_id=user_id)
    demoted = member.role == OrgRole.ADMIN and role != OrgRole.ADMIN
    if demoted and await _admin_count(conn, org_id=org_id) == 1:
        raise Conflict("an org must keep at least one admin: make another member admin first")
    if member.role != role:
        await conn.execute(
            update(org_members)
            .where(org_members.c.user_id == member.user_id)
            .values(role=role.value, updated_at=now)
        )
        member = Membership(member.org_id, member.user_id, role, member.created_at, now)
    return member, await find_user(conn, id_or_email=member.user_id)


async def get_member(
    conn: AsyncConnection, *, org_id: str, user_id: str
) -> tuple[Membership, User]:
    query = select(org_members).where(
        org_members.c.org_id == org_id, org_members.c.user_id == parse_uuid(user_id, "user")
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no member {quoted(user_id)} in this org")
    return Membership(**{**row, "role": OrgRole(row["role"])}), await find_user(
        conn, id_or_email=user_id
    )


async def _admin_count(conn: AsyncConnection, *, org_id: str) -> int:
    query = (
        select(func.count())
        .select_from(org_members)
        .where(org_members.c.org_id == org_id, org_members.c.role == OrgRole.ADMIN.value)
    )
    return int((await conn.execute(query)).scalar_one())


async def _member_count(conn: AsyncConnection, *, org_id: str) -> int:
    query = select(func.count()).select_from(org_members).where(org_members.c.org_id == org_id)
    return int((await conn.execute(query)).scalar_one())


async def update_org(
    conn: AsyncConnection, *, org_id: str, changes: dict[str, object], actor: User, now: datetime
) -> Org:
    """Set the fields an admin sent; a field left out, or sent as null, stays as it was (the
    SDK sends every field, null when unset)."""
    await _lock_org(conn, org_id=org_id)
    await _require_admin(conn, org_id=org_id, actor=actor)
    values = {name: value for name, value in changes.items() if value is not None}
    if "billing_email" in values:
        values["billing_email"] = normalize_email(str(values["billing_email"]))
    await conn.execute(update(orgs).where(orgs.c.id == org_id).values(**values, updated_at=now))
    return await find_org(conn, org_id=org_id)


async def delete_org(conn: AsyncConnection, *, org_id: str, actor: User) -> None:
    """An admin deletes their org once they are its only member and it holds no money either
    way: nothing due, no stable credits (paid for) that would be lost. Its plan ends; its
    balance and ledger stay, as the record. Unspent monthly credits (a grant) lapse."""
    await _lock_org(conn, org_id=org_id, exclusive=True)
    await _require_admin(conn, org_id=org_id, actor=actor)
    others = await _member_count(conn, org_id=org_id) - 1
    if others > 0:
        raise Conflict(f"the org still has {others} other member(s): remove them first")
    customer = Customer("org", org_id)
    balance = await lock_balance(conn, customer=customer)
    if balance.total_due_micros > 0:
        due = format_micros(balance.total_due_micros)
        raise Conflict(f"the org owes ${due}: pay it before deleting the org")
    if balance.stable_micros > 0:
        stable = format_micros(balance.stable_micros)
        raise Conflict(f"the org holds ${stable} of stable credits: spend them or ask staff first")
    # A fee or purchase billed and not paid is due too, and dunning would go on charging it.
    invoice = await unpaid_invoice(conn, customer=customer)
    if invoice is not None:
        raise Conflict(f"invoice {invoice} is unpaid: pay it before deleting the org")
    await end_subscription(conn, customer=customer)
    await conn.execute(orgs.delete().where(orgs.c.id == org_id))


# --- invitations: how a user joins an org by their own consent ----------------------------------

INVITATION_LIFETIME = timedelta(days=14)


class InvitationStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Invitation:
    id: str
    org_id: str
    email: str
    role: OrgRole
    status: InvitationStatus
    invited_by: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    org_name: str | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


def _invitation(row: RowMapping) -> Invitation:
    return Invitation(
        **{**row, "role": OrgRole(row["role"]), "status": InvitationStatus(row["status"])}
    )


_INVITATIONS = select(org_invitations, orgs.c.name.label("org_name")).join(
    orgs, orgs.c.id == org_invitations.c.org_id
)


async def invite(
    conn: AsyncConnection, *, org_id: str, email: str, role: OrgRole, actor: User, now: datetime
) -> Invitation:
    """Invite an email address to the org: whether a user has it or not, the answer is the same
    (no enumeration). Inviting it again while pending renews the invitation."""
    email = normalize_email(email)
    await _lock_org(conn, org_id=org_id)
    await _require_admin(conn, org_id=org_id, actor=actor)
    members = select(org_members.c.user_id).join(users, users.c.id == org_members.c.user_id)
    in_org = members.where(org_members.c.org_id == org_id, users.c.email == email)
    if (await conn.execute(in_org)).first() is not None:
        # Only a member of this very org, whom the admin can list anyway.
        raise Conflict(f"{email} already belongs to this org")
    renewal: dict[str, object] = {"role": role.value, "invited_by": actor.id, "updated_at": now}
    renewal["expires_at"] = now + INVITATION_LIFETIME
    if not await _renew(conn, org_id=org_id, email=email, values=renewal):
        fresh = {"id": str(uuid.uuid4()), "org_id": org_id, "email": email, "created_at": now}
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(org_invitations).values(
                        **fresh, **renewal, status=InvitationStatus.PENDING.value
                    )
                )
        except IntegrityError:  # invited at the same moment by another request
            await _renew(conn, org_id=org_id, email=email, values=renewal)
    query = _INVITATIONS.where(
        org_invitations.c.org_id == org_id,
        org_invitations.c.email == email,
        org_invitations.c.status == InvitationStatus.PENDING.value,
    )
    return _invitation((await conn.execute(query)).mappings().one())


async def _renew(
    conn: AsyncConnection, *, org_id: str, email: str, values: Mapping[str, object]
) -> bool:
    result = await conn.execute(
        update(org_invitations)
        .where(
            org_invitations.c.org_id == org_id,
            org_invitations.c.email == email,
            org_invitations.c.status == InvitationStatus.PENDING.value,
        )
        .values(**values)
    )
    return result.rowcount > 0


async def list_invitations(
    conn: AsyncConnection,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    descending: bool = False,
    org_id: str | None = None,
    email: str | None = None,
    now: datetime,
) -> list[Invitation]:
    """Pending invitations, of one org (expired ones too, to renew) or to one email address
    (only those it can still accept), in (created_at, id) order."""
    query = _INVITATIONS.where(org_invitations.c.status == InvitationStatus.PENDING.value)
    if org_id is not None:
        query = query.where(org_invitations.c.org_id == org_id)
    if email is not None:
        query = query.where(org_invitations.c.email == email, org_invitations.c.expires_at > now)
    key = (org_invitations.c.created_at, org_invitations.c.id)
    query = ordered_after(query.limit(limit), key, after, descending=descending)
    return [_invitation(row) for row in (await conn.execute(query)).mappings()]


async def respond_to_invitation(
    conn: AsyncConnection, *, invitation_id: str, user: User, accept: bool, now: datetime
) -> tuple[Invitation, Membership | None]:
    """The invited user accepts (and joins, if in no org) or declines."""
    query = _INVITATIONS.where(
        org_invitations.c.id == parse_uuid(invitation_id, "invitation"),
        org_invitations.c.email == user.email,
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no invitation {invitation_id} for you")
    # The org first, then the invitation: the order revoking takes them in, so never a deadlock.
    await _lock_org(conn, org_id=row["org_id"])
    row = (await conn.execute(query.with_for_update(of=org_invitations))).mappings().one()
    invitation = _invitation(row)
    if invitation.status != InvitationStatus.PENDING:
        raise Conflict(f"this invitation was already {invitation.status.value}")
    if invitation.expired(now):
        raise Conflict(f"this invitation expired at {invitation.expires_at.isoformat()}")
    membership = None
    if accept:
        admins = await _admin_count(conn, org_id=invitation.org_id)
        if admins == 0 and invitation.role != OrgRole.ADMIN:
            # Its last admin left it empty: members would be in an org no one can run.
            raise Conflict("this org has no admin: only an invitation as admin can be accepted")
        membership = await add_member(
            conn, org_id=invitation.org_id, user=user, role=invitation.role, now=now
        )
    status = InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED
    await _set_status(conn, invitation_id=invitation.id, status=status, now=now)
    return _with_status(invitation, status, now), membership


async def revoke_invitation(
    conn: AsyncConnection, *, org_id: str, invitation_id: str, actor: User, now: datetime
) -> None:
    await _lock_org(conn, org_id=org_id)
    await _require_admin(conn, org_id=org_id, actor=actor)
    query = select(org_invitations.c.status).where(
        org_invitations.c.id == parse_uuid(invitation_id, "invitation"),
        org_invitations.c.org_id == org_id,
    )
    status = (await conn.execute(query.with_for_update())).scalar()
    if status is None:
        raise NotFound(f"no invitation {invitation_id} in this org")
    if status != InvitationStatus.PENDING.value:
        raise Conflict(f"this invitation was already {status}")
    await _set_status(conn, invitation_id=invitation_id, status=InvitationStatus.REVOKED, now=now)


async def _set_status(
    conn: AsyncConnection, *, invitation_id: str, status: InvitationStatus, now: datetime
) -> None:
    await conn.execute(
        update(org_invitations)
        .where(org_invitations.c.id == invitation_id)
        .values(status=status.value, updated_at=now)
    )


def _with_status(invitation: Invitation, status: InvitationStatus, now: datetime) -> Invitation:
    return Invitation(**{**invitation.__dict__, "status": status, "updated_at": now})


async def list_members(
    conn: AsyncConnection,
    *,
    org_id: str,
    limit: int,
    after: tuple[datetime, str] | None,
    descending: bool = False,
) -> list[tuple[Membership, User]]:
    """`limit` members in (created_at, user_id) order, starting after the `after` key."""
    query = (
        select(
            org_members,
            users.c.email,
            users.c.name,
            users.c.is_staff,
            users.c.created_at.label("user_created_at"),
            users.c.updated_at.label("user_updated_at"),
        )
        .join(users, users.c.id == org_members.c.user_id)
        .where(org_members.c.org_id == org_id)
        .limit(limit)
    )
    key = (org_members.c.created_at, org_members.c.user_id)
    query = ordered_after(query, key, after, descending=descending)
    rows = (await conn.execute(query)).mappings().all()
    return [
        (
            Membership(
                r["org_id"], r["user_id"], OrgRole(r["role"]), r["created_at"], r["updated_at"]
            ),
            User(
                r["user_id"],
                r["email"],
                r["name"],
                r["is_staff"],
                r["user_created_at"],
                r["user_updated_at"],
            ),
        )
        for r in rows
    ]
