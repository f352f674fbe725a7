"""People and organizations: users, their API tokens, orgs and their members."""

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.tokens import new_token, token_hash
from zoopay.catalog.service import Catalog
from zoopay.db.keyset import ordered_after
from zoopay.db.tables import api_tokens, org_members, orgs, users
from zoopay.errors import BadRequest, Conflict, NotFound, quoted
from zoopay.ledger.service import Customer, open_balance
from zoopay.subscriptions.service import start_free_plan

# No spaces or control characters (PostgreSQL text cannot even hold NUL).
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")


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
    if not _EMAIL.match(email) or len(email) > 320:
        raise BadRequest(f"{quoted(email)} is not an email address")
    return email


def parse_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest(f"{quoted(value)} is not a valid {what} id (a UUID)") from None


async def create_user(
    conn: AsyncConnection,
    catalog: Catalog,
    email: str,
    now: datetime,
    *,
    name: str | None = None,
    is_staff: bool = False,
) -> User:
    """A new user, on the free plan with its monthly grant."""
    user = User(str(uuid.uuid4()), normalize_email(email), name, is_staff, now, now)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(users).values(**user.__dict__))
    except IntegrityError:
        raise Conflict(f"a user with email {user.email} already exists") from None
    balance = await open_balance(conn, user.customer, now)
    await start_free_plan(conn, catalog, balance, actor=user.id, now=now)
    return user


@dataclass(frozen=True)
class Principal:
    """Who presented a token: a user, or a service that reports usage."""

    token_id: str
    user: User | None
    service_name: str | None

    @property
    def may_meter(self) -> bool:
        """Services and staff may report usage and ask for authorizations."""
        return self.service_name is not None or (self.user is not None and self.user.is_staff)


async def create_token(conn: AsyncConnection, user: User, now: datetime) -> str:
    """A new API token for the user; only its hash is kept."""
    return await _insert_token(conn, now, user_id=user.id)


async def create_service_token(conn: AsyncConnection, service_name: str, now: datetime) -> str:
    """A token for a service: it may report usage and ask for authorizations, nothing else."""
    if not service_name.strip():
        raise BadRequest("a service needs a name")
    return await _insert_token(conn, now, service_name=service_name.strip())


async def _insert_token(conn: AsyncConnection, now: datetime, **owner: str) -> str:
    token = new_token()
    await conn.execute(
        insert(api_tokens).values(
            id=str(uuid.uuid4()), token_hash=token_hash(token), created_at=now, **owner
        )
    )
    return token


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    query = (
        select(api_tokens.c.id.label("token_id"), api_tokens.c.service_name, users)
        .select_from(api_tokens.outerjoin(users, api_tokens.c.user_id == users.c.id))
        .where(api_tokens.c.token_hash == token_hash(token))
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    user_fields = {name: row[name] for name in User.__dataclass_fields__}
    user = User(**user_fields) if row["id"] is not None else None
    return Principal(row["token_id"], user, row["service_name"])


async def find_user(conn: AsyncConnection, id_or_email: str) -> User:
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


async def membership_of(conn: AsyncConnection, user: User) -> Membership | None:
    row = (
        (await conn.execute(select(org_members).where(org_members.c.user_id == user.id)))
        .mappings()
        .first()
    )
    return Membership(**row) if row else None


async def find_org(conn: AsyncConnection, org_id: str) -> Org:
    query = select(orgs).where(orgs.c.id == parse_uuid(org_id, "org"))
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no org {org_id}")
    return Org(**row)


async def create_org(conn: AsyncConnection, admin: User, details: OrgDetails, now: datetime) -> Org:
    """A new org with `admin` as its first admin, a zero balance and no subscription."""
    if await membership_of(conn, admin) is not None:
        raise Conflict(f"{admin.email} already belongs to an org")
    billing_email = normalize_email(details.billing_email or admin.email)
    org = Org(
        id=str(uuid.uuid4()),
        **{**details.__dict__, "billing_email": billing_email},
        created_at=now,
        updated_at=now,
    )
    await conn.execute(insert(orgs).values(**org.__dict__))
    await _insert_member(conn, org.id, admin, OrgRole.ADMIN, now)
    await open_balance(conn, org.customer, now)
    return org


async def add_member(
    conn: AsyncConnection, org_id: str, user: User, role: OrgRole, now: datetime
) -> Membership:
    existing = await membership_of(conn, user)
    if existing is not None:
        where = "this org" if existing.org_id == org_id else "another org"
        raise Conflict(f"{user.email} already belongs to {where}")
    return await _insert_member(conn, org_id, user, role, now)


async def _insert_member(
    conn: AsyncConnection, org_id: str, user: User, role: OrgRole, now: datetime
) -> Membership:
    member = Membership(org_id, user.id, role, now, now)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(org_members).values(**member.__dict__))
    except IntegrityError:
        raise Conflict(f"{user.email} already belongs to an org") from None
    return member


async def remove_member(conn: AsyncConnection, org_id: str, user_id: str) -> None:
    """Remove a member; the last admin cannot leave an org without an admin."""
    user_id = parse_uuid(user_id, "user")
    # Removals from one org take turns: two admins removing each other at once would each
    # count the other still there (write skew on PostgreSQL) and leave the org with none.
    await conn.execute(select(orgs.c.id).where(orgs.c.id == org_id).with_for_update(key_share=True))
    query = select(org_members).where(
        org_members.c.org_id == org_id, org_members.c.user_id == user_id
    )
    row = (await conn.execute(query.with_for_update())).mappings().first()
    if row is None:
        raise NotFound(f"no member {quoted(user_id)} in this org")
    if row["role"] == OrgRole.ADMIN and await _admin_count(conn, org_id) == 1:
        raise Conflict("an org must keep at least one admin")
    await conn.execute(org_members.delete().where(org_members.c.user_id == user_id))


async def _admin_count(conn: AsyncConnection, org_id: str) -> int:
    query = (
        select(func.count())
        .select_from(org_members)
        .where(org_members.c.org_id == org_id, org_members.c.role == OrgRole.ADMIN.value)
    )
    return int((await conn.execute(query)).scalar_one())


async def list_members(
    conn: AsyncConnection,
    org_id: str,
    limit: int,
    after: tuple[datetime, str] | None,
    *,
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
