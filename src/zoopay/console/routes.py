"""The console's pages: another skin over the API's services, with the API's rules.

Each page resolves its session to the Principal an API token of its user would be, then calls
the very dependency functions (`require_user`, `org_membership`, `org_admin`, `staff_user`) and
services the API's routes call, so it can do exactly what that token could.
"""

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.accounts.service import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    Membership,
    OrgRole,
    Principal,
    TokenOwner,
    User,
    create_user_token,
    find_org,
    find_user,
    invite,
    list_invitations,
    list_members,
    list_tokens,
    remove_member,
    respond_to_invitation,
    revoke_invitation,
    revoke_owned_token,
    set_role,
)
from zoopay.api.deps import (
    Engine,
    Now,
    catalog_of,
    current_principal,
    engine_of,
    org_admin,
    org_membership,
    processor_of,
    staff_user,
)
from zoopay.api.errors import describe_validation
from zoopay.api.openapi import errors
from zoopay.api.pagination import decode_page_token, encode_page_token
from zoopay.api.routing import json_router
from zoopay.billing.routes import current_statement
from zoopay.billing.schemas import CustomerBalance
from zoopay.billing.service import set_balance
from zoopay.billing.upgrades import PlanChange, change_plan_paid, review_change
from zoopay.catalog.schemas import (
    EnterpriseSubscriptionTierPrice,
    OptionFlat,
    OptionPerUser,
    TierName,
)
from zoopay.catalog.service import Catalog, Plan
from zoopay.console import service
from zoopay.console.web import (
    ConsoleRoute,
    Viewer,
    checked_form,
    clear_session_cookie,
    now_of,
    read_form,
    redirect,
    render,
    set_session_cookie,
    static_file,
    viewer,
)
from zoopay.db.engine import reading, transaction
from zoopay.errors import BadRequest, Forbidden
from zoopay.instants import InstantOutOfRange, check_instant
from zoopay.invoicing.service import InvoiceStatus, list_invoices
from zoopay.ledger.service import Balance, Customer, list_entries
from zoopay.metering.service import list_calls
from zoopay.money import InvalidAmount, from_micros, parse_dollars, to_micros
from zoopay.payments.schemas import AggregateUsageCollectionThresholdView
from zoopay.payments.thresholds import usage_threshold
from zoopay.subscriptions.periods import add_months, period_start
from zoopay.subscriptions.service import (
    change_plan,
    current_plan,
    get_subscription,
    set_enterprise_price,
)

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)
# Matched before the customer pages' /console/{kind}/...: `staff` is no customer kind.
staff_router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)
api_router = json_router(tags=["console"])

AccountKind = Literal["user", "org"]
CALLS_PAGE = 50
LEDGER_PAGE = 50
MAX_REASON = 500


def _principal(who: Viewer) -> Principal:
    assert who.session is not None
    return who.session.principal


def user_of(who: Viewer) -> User:
    """A console session is always a person's (services cannot sign in)."""
    user = _principal(who).user
    assert user is not None
    return user


# --- static files ---


@router.get("/static/{name}")
async def console_static(
    name: Annotated[str, Path(pattern=r"^(console\.(css|js)|card\.js)$")],
) -> Response:
    media = "text/css" if name.endswith(".css") else "text/javascript"
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(static_file(name), media_type=media, headers=headers)


# --- signing in and out ---


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    who = await viewer(request, required=False)
    if who.session is not None:
        return redirect("/console/")
    return render(request, who, "sign_in.html")


@router.get("/link")
async def link_page(
    request: Request,
    secret: Annotated[str, Query(max_length=100)] = "",
    next: Annotated[str, Query(max_length=2200)] = "",
) -> Response:
    """A sign-in link opens a page with one button: a link scanner that fetches the URL does
    not spend it; the person's click (a POST) does. `next`: the console page to open then."""
    who = await viewer(request, required=False)
    return render(request, who, "link.html", secret=secret, next=service.next_page(next))


@router.post("/link")
async def redeem_link(request: Request) -> Response:
    form = await read_form(request)
    async with transaction(engine_of(request)) as conn:
        opened = await service.redeem_link(conn, secret=form.get("secret", ""), now=now_of(request))
    return _signed_in(request, opened, service.next_page(form.get("next", "")))


@router.post("/sign-in")
async def sign_in_with_token(request: Request) -> Response:
    form = await read_form(request)
    async with transaction(engine_of(request)) as conn:
        opened = await service.sign_in_with_token(
            conn, token=form.get("token", ""), now=now_of(request)
        )
    return _signed_in(request, opened)


def _signed_in(
    request: Request, opened: service.OpenedSession, page: str = "/console/"
) -> Response:
    response = redirect(page)
    seconds = int((opened.expires_at - now_of(request)).total_seconds())
    set_session_cookie(request, response, opened.secret, seconds)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    who = await viewer(request)
    await checked_form(request, who)
    async with transaction(engine_of(request)) as conn:
        await service.end_session(
            conn, secret=request.cookies.get("zoopay_console", ""), now=now_of(request)
        )
    response = redirect("/console/sign-in")
    clear_session_cookie(request, response)
    return response


# --- a customer's own pages ---


@router.get("/")
async def home(request: Request) -> Response:
    await viewer(request)
    return redirect("/console/user/")


class Account:
    """The customer a page is about: the viewer, or the viewer's org; `may_change` as the API
    decides it (a user for themselves; for an org, its admins)."""

    def __init__(self, kind: AccountKind, customer: Customer, membership: Membership | None):
        self.kind = kind
        self.customer = customer
        self.membership = membership

    @property
    def may_change(self) -> bool:
        return self.membership is None or self.membership.role == OrgRole.ADMIN


async def account_of(request: Request, who: Viewer, kind: AccountKind) -> Account:
    user = user_of(who)
    if kind == "user":
        return Account(kind, user.customer, None)
    membership = await org_membership(engine_of(request), user)
    return Account(kind, membership.org, membership)


async def require_admin(account: Account) -> Membership:
    """The API's org_admin check, for an org page that only admins may see or use."""
    assert account.membership is not None
    return await org_admin(account.membership)


async def paying_account(request: Request, who: Viewer, kind: AccountKind) -> Account:
    """Whose money a billing or invoices page handles: the user's own, or the org's for an admin
    (as the API's /org/payment* routes, org admins only)."""
    account = await account_of(request, who, kind)
    if kind == "org":
        await require_admin(account)
    return account


async def paying_customer(request: Request, who: Viewer, kind: AccountKind) -> Customer:
    """The customer of `paying_account`."""
    return (await paying_account(request, who, kind)).customer


async def paying_customer_form(
    request: Request, kind: AccountKind
) -> tuple[dict[str, str], Customer]:
    """A form of an invoices page, its CSRF token checked, and whose money it handles."""
    who = await viewer(request)
    form = await checked_form(request, who)
    return form, await paying_customer(request, who, kind)


Kind = Annotated[AccountKind, Path(description="user or org")]


@router.get("/{kind}/")
async def overview(request: Request, kind: Kind) -> Response:
    who = await viewer(request)
    account = await account_of(request, who, kind)
    now, catalog = now_of(request), catalog_of(request)
    statement = await current_statement(engine_of(request), catalog, account.customer, now)
    balance = CustomerBalance.of(statement, True)
    period = _period(statement.subscription.anchor_at, now) if statement.subscription else None
    plan = current_plan(catalog, statement.subscription)
    usage = None
    if period is not None:
        async with reading(engine_of(request)) as conn:
            usage = await service.daily_usage(
                conn,
                catalog=catalog,
                customer=account.customer,
                since=period[0],
                until=period[1],
                zone=who.zone,
            )
    async with reading(engine_of(request)) as conn:
        failed = await service.failed_payments(conn, customer=account.customer)
    invitations = []
    if kind == "user":
        async with reading(engine_of(request)) as conn:
            invitations = await list_invitations(
                conn,
                limit=20,
                after=None,
                email=user_of(who).email,
                now=now,
            )
    return render(
        request,
        who,
        "overview.html",
        account=account,
        balance=balance,
        statement=statement,
        plan=plan,
        period=period,
        usage=usage,
        chart=_chart(usage) if usage else None,
        warnings=_warnings(statement.balance, plan, failed),
        invitations=invitations,
    )


def _period(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    start = period_start(anchor, now)
    months = (start.year - anchor.year) * 12 + start.month - anchor.month
    return start, add_months(anchor, months + 1)


def _warnings(balance: Balance, plan: Plan | None, failed_payments: int) -> list[str]:
    found = []
    if failed_payments:
        found.append(
            f"A payment failed: {failed_payments} invoice(s) are open. Pay them from Invoices,"
            " or add a card under Billing."
        )
    if balance.total_due_micros > 0:
        found.append("Money is due on this account: usage went past the credits.")
    grant = plan.monthly_grant_micros if plan else 0
    remaining = balance.monthly_micros + balance.stable_micros
    if grant and remaining * 10 < grant:
        found.append("Credits are running low: less than a tenth of the monthly grant is left.")
    return found


CHART_WIDTH, CHART_HEIGHT = 700, 200
CATEGORY_COLOURS = {"modeling": "c1", "ml": "c2", "file": "c3", "other": "c4"}


def _chart(usage: service.DailyUsage) -> dict[str, object]:
    """Bars for an SVG drawn on the server: one bar per day, stacked by category."""
    totals = usage.totals
    top = max(totals) if totals else 0
    slot = CHART_WIDTH / max(len(usage.days), 1)
    bars = []
    for index, day in enumerate(usage.days):
        y: float = CHART_HEIGHT
        for category, values in sorted(usage.by_category.items()):
            value = values[index]
            if value <= 0 or top <= 0:
                continue
            height = max(1.0, CHART_HEIGHT * value / top)
            y -= height
            bars.append(
                {
                    "x": round(index * slot + slot * 0.1, 2),
                    "y": round(y, 2),
                    "w": round(slot * 0.8, 2),
                    "h": round(height, 2),
                    "css": CATEGORY_COLOURS.get(category, "c4"),
                    "title": f"{day.isoformat()} {category}",
                    "micros": value,
                }
            )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "top": top,
        "rows": [
            (day, totals[i], {c: v[i] for c, v in usage.by_category.items()})
            for i, day in enumerate(usage.days)
        ],
        "categories": sorted(usage.by_category),
        "first": usage.days[0],
        "last": usage.days[-1],
        "colours": CATEGORY_COLOURS,
    }


def _day(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} is not a date (YYYY-MM-DD)") from None
    # Within the instants zoopay accepts: a day far outside them overflows as an instant in the
    # viewer's zone (9999-12-31's next day; 0001-01-01 east of UTC).
    try:
        check_instant(datetime.combine(day, time(), UTC))
    except InstantOutOfRange as exc:
        raise BadRequest(f"{name} {exc}") from None
    return day


@router.get("/{kind}/calls")
async def calls_page(
    request: Request,
    kind: Kind,
    endpoint: Annotated[str, Query(max_length=512)] = "",
    since: Annotated[str, Query(alias="from", max_length=10)] = "",
    until: Annotated[str, Query(alias="to", max_length=10)] = "",
    page: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    who = await viewer(request)
    account = await account_of(request, who, kind)
    if kind == "org":
        await require_admin(account)  # /org/api-calls is for org admins
    first, last = _day(since, "from"), _day(until, "to")
    start = datetime.combine(first, time(), who.zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time(), who.zone) if last else None
    after = decode_page_token(page) if page else None
    org_id, user_id = (account.customer.id, None) if kind == "org" else (None, account.customer.id)
    async with reading(engine_of(request)) as conn:
        rows = await list_calls(
            conn,
            limit=CALLS_PAGE + 1,
            after=after,
            descending=True,
            endpoint_prefix=endpoint or None,
            since=start,
            until=end,
            org_id=org_id,
            user_id=user_id,
        )
    next_page = None
    if len(rows) > CALLS_PAGE:
        last_row = rows[CALLS_PAGE - 1]
        next_page = encode_page_token(last_row.created_at, last_row.id)
    return render(
        request,
        who,
        "calls.html",
        account=account,
        calls=rows[:CALLS_PAGE],
        next_page=next_page,
        filters={"endpoint": endpoint, "from": since, "to": until},
    )


def _offered(catalog: Catalog, kind: AccountKind) -> list[Plan]:
    return [p for p in catalog.plans() if p.is_individual == (kind == "user")]


@router.get("/{kind}/plan")
async def plan_page(request: Request, kind: Kind) -> Response:
    who = await viewer(request)
    account = await account_of(request, who, kind)
    async with reading(engine_of(request)) as conn:
        subscription = await get_subscription(conn, customer=account.customer)
    current = current_plan(catalog_of(request), subscription)
    return render(
        request,
        who,
        "plan.html",
        account=account,
        plans=_offered(catalog_of(request), kind),
        current=current,
        subscription=subscription,
    )


def _tier(text: str, catalog: Catalog, kind: AccountKind) -> Plan:
    plan = next((p for p in _offered(catalog, kind) if p.name.value == text), None)
    if plan is None:
        raise BadRequest(f"no {kind} plan {text!r} is offered")
    return plan


@router.get("/{kind}/plan/review")
async def plan_review(
    request: Request, kind: Kind, tier: Annotated[str, Query(max_length=32)] = ""
) -> Response:
    """The change, priced, before it is confirmed."""
    who = await viewer(request)
    account = await account_of(request, who, kind)
    catalog = catalog_of(request)
    plan = _tier(tier, catalog, kind)
    async with reading(engine_of(request)) as conn:
        review = await review_change(
            conn,
            catalog=catalog,
            change=PlanChange(
                account.customer, TierName(plan.name), pay_annually=None, actor=user_of(who).id
            ),
            terms=request.app.state.change_terms,
            now=now_of(request),
        )
    current = review.current
    return render(
        request,
        who,
        "plan_review.html",
        account=account,
        plan=plan,
        current=current,
        upgrade=current is None or plan.rank > current.rank,
        charge=from_micros(review.charged.total_micros if review.charged else 0),
        tax=from_micros(review.charged.tax_micros if review.charged else 0),
        credit=from_micros(review.credit_micros),
    )


@router.post("/{kind}/plan")
async def plan_change(request: Request, kind: Kind) -> Response:
    who = await viewer(request)
    form = await checked_form(request, who)
    account = await paying_account(request, who, kind)  # as PUT /org/payment/subscriptions
    catalog = catalog_of(request)
    plan = _tier(form.get("tier", ""), catalog, kind)
    user = user_of(who)
    # A customer's own change, as PUT .../payment/subscriptions makes it: an upgrade is paid first.
    await change_plan_paid(
        engine_of(request),
        catalog=catalog,
        processor=processor_of(request),
        terms=request.app.state.change_terms,
        change=PlanChange(account.customer, TierName(plan.name), pay_annually=None, actor=user.id),
        now=now_of(request),
        create_only=False,
    )
    return redirect(f"/console/{kind}/")


# --- API tokens ---


@router.get("/user/tokens")
async def tokens_page(request: Request) -> Response:
    who = await viewer(request)
    user = user_of(who)
    async with reading(engine_of(request)) as conn:
        tokens = await list_tokens(
            conn, owner=TokenOwner.USER, owner_id=user.id, limit=200, after=None, descending=True
        )
    return render(request, who, "tokens.html", tokens=tokens, new_token=None)


@router.post("/user/tokens")
async def token_create(request: Request) -> Response:
    who = await viewer(request)
    form = await checked_form(request, who)
    user = user_of(who)
    label = form.get("label", "").strip() or None
    async with transaction(engine_of(request)) as conn:
        _record, secret = await create_user_token(conn, user=user, label=label, now=now_of(request))
    async with reading(engine_of(request)) as conn:
        tokens = await list_tokens(
            conn, owner=TokenOwner.USER, owner_id=user.id, limit=200, after=None, descending=True
        )
    # Shown once, on this answer (never in a URL, never stored).
    return render(request, who, "tokens.html", tokens=tokens, new_token=secret, status=201)


@router.post("/user/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: Annotated[str, Path(max_length=64)]) -> Response:
    who = await viewer(request)
    await checked_form(request, who)
    user = user_of(who)
    async with transaction(engine_of(request)) as conn:
        await revoke_owned_token(
            conn, owner=TokenOwner.USER, owner_id=user.id, token_id=token_id, now=now_of(request)
        )
    return redirect("/console/user/tokens")


# --- invitations to the viewer ---


@router.post("/user/invitations/{invitation_id}/{answer}")
async def invitation_answer(
    request: Request,
    invitation_id: Annotated[str, Path(max_length=64)],
    answer: Literal["accept", "decline"],
) -> Response:
    who = await viewer(request)
    await checked_form(request, who)
    user = user_of(who)
    async with transaction(engine_of(request)) as conn:
        await respond_to_invitation(
            conn,
            invitation_id=invitation_id,
            user=user,
            accept=answer == "accept",
            now=now_of(request),
        )
    return redirect("/console/org/" if answer == "accept" else "/console/user/")


# --- an org's members (admins) ---


@router.get("/org/members")
async def members_page(request: Request) -> Response:
    who = await viewer(request)
    account = await account_of(request, who, "org")
    admin = await require_admin(account)
    async with reading(engine_of(request)) as conn:
        members = await list_members(conn, org_id=admin.org_id, limit=1000, after=None)
        invitations = await list_invitations(
            conn, limit=1000, after=None, org_id=admin.org_id, now=now_of(request)
        )
        org = await find_org(conn, org_id=admin.org_id)
    return render(
        request,
        who,
        "members.html",
        account=account,
        org=org,
        members=members,
        invitations=invitations,
        roles=list(OrgRole),
        now=now_of(request),
    )


def _role(text: str) -> OrgRole:
    try:
        return OrgRole(text)
    except ValueError:
        raise BadRequest("role must be admin or member") from None


async def _org_admin_form(request: Request) -> tuple[User, dict[str, str], Membership]:
    """A form of the members page: the admin who sent it, its fields, and their membership."""
    who = await viewer(request)
    form = await checked_form(request, who)
    admin = await require_admin(await account_of(request, who, "org"))
    return user_of(who), form, admin


@router.post("/org/invitations")
async def invitation_create(request: Request) -> Response:
    user, form, admin = await _org_admin_form(request)
    async with transaction(engine_of(request)) as conn:
        await invite(
            conn,
            org_id=admin.org_id,
            email=form.get("email", ""),
            role=_role(form.get("role", "member")),
            actor=user,
            now=now_of(request),
        )
    return redirect("/console/org/members")


@router.post("/org/invitations/{invitation_id}/revoke")
async def invitation_revoke(
    request: Request, invitation_id: Annotated[str, Path(max_length=64)]
) -> Response:
    user, _form, admin = await _org_admin_form(request)
    async with transaction(engine_of(request)) as conn:
        await revoke_invitation(
            conn, org_id=admin.org_id, invitation_id=invitation_id, actor=user, now=now_of(request)
        )
    return redirect("/console/org/members")


@router.post("/org/members/{user_id}/role")
async def member_role(request: Request, user_id: Annotated[str, Path(max_length=64)]) -> Response:
    user, form, admin = await _org_admin_form(request)
    async with transaction(engine_of(request)) as conn:
        await set_role(
            conn,
            org_id=admin.org_id,
            user_id=user_id,
            role=_role(form.get("role", "")),
            actor=user,
            now=now_of(request),
        )
    return redirect("/console/org/members")


@router.post("/org/members/{user_id}/remove")
async def member_remove(request: Request, user_id: Annotated[str, Path(max_length=64)]) -> Response:
    user, _form, admin = await _org_admin_form(request)
    async with transaction(engine_of(request)) as conn:
        await remove_member(conn, org_id=admin.org_id, user_id=user_id, actor=user)
    return redirect("/console/org/members")


# --- staff ---


async def staff_viewer(request: Request) -> Viewer:
    who = await viewer(request)
    user = user_of(who)
    await staff_user(user)  # the API's own check: 403 for anyone else
    return who


@staff_router.get("/staff/")
async def staff_home(request: Request, q: Annotated[str, Query(max_length=320)] = "") -> Response:
    who = await staff_viewer(request)
    now = now_of(request)
    async with reading(engine_of(request)) as conn:
        hits = await service.find_customers(conn, text=q)
        business = await service.business_overview(
            conn,
            catalog=catalog_of(request),
            since=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        )
    return render(request, who, "staff.html", q=q, hits=hits, business=business)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def staff_customer_of(request: Request, kind: AccountKind, customer_id: str) -> Customer:
    """The customer a staff page names; 404 for an unknown one, as the API's staff routes."""
    async with reading(engine_of(request)) as conn:
        if kind == "user":
            return (await find_user(conn, id_or_email=customer_id)).customer
        return (await find_org(conn, org_id=customer_id)).customer


async def staff_form(
    request: Request, kind: AccountKind, customer_id: str
) -> tuple[User, dict[str, str], Customer]:
    """A form of a staff page: the staff user who sent it, its fields (CSRF token checked), and
    the customer it acts on."""
    who = await staff_viewer(request)
    form = await checked_form(request, who)
    return user_of(who), form, await staff_customer_of(request, kind, customer_id)


@staff_router.get("/staff/{kind}/{customer_id}")
async def staff_customer(
    request: Request,
    kind: Kind,
    customer_id: Annotated[str, Path(max_length=MAX_EMAIL)],
    # A ledger entry's id: ASCII digits (str.isdigit() takes "²", which int() refuses), and
    # at most 18 of them, within the BIGINT id column.
    ledger_page: Annotated[str, Query(pattern=r"^[0-9]{0,18}$")] = "",
) -> Response:
    who = await staff_viewer(request)
    customer = await staff_customer_of(request, kind, customer_id)
    catalog = catalog_of(request)
    statement = await current_statement(engine_of(request), catalog, customer, now_of(request))
    before = int(ledger_page) if ledger_page else None
    async with reading(engine_of(request)) as conn:
        entries = await list_entries(
            conn, customer=customer, limit=LEDGER_PAGE + 1, before_id=before
        )
        org_id, user_id = (customer.id, None) if kind == "org" else (None, customer.id)
        calls = await list_calls(
            conn, limit=20, after=None, descending=True, org_id=org_id, user_id=user_id
        )
        invoices = await list_invoices(conn, customer=customer, limit=100)
        name = await _customer_name(conn, customer)
        actors = await service.actor_emails(conn, actors={entry.actor for entry in entries})
        threshold = await usage_threshold(conn, customer=customer)
    return render(
        request,
        who,
        "staff_customer.html",
        kind=kind,
        customer=customer,
        name=name,
        balance=CustomerBalance.of(statement, True),
        statement=statement,
        entries=entries[:LEDGER_PAGE],
        actors=actors,
        older=str(entries[LEDGER_PAGE - 1].id) if len(entries) > LEDGER_PAGE else None,
        calls=calls,
        # Each refund form carries its own key: sent twice, it refunds once.
        invoices=[(invoice, uuid.uuid4().hex) for invoice in invoices],
        paid=InvoiceStatus.PAID,
        plans=_offered(catalog, kind),
        threshold=AggregateUsageCollectionThresholdView.of(threshold),
    )


async def _customer_name(conn: AsyncConnection, customer: Customer) -> str:
    if customer.kind == "user":
        user = await find_user(conn, id_or_email=customer.id)
        return user.email if not user.name else f"{user.name} <{user.email}>"
    org = await find_org(conn, org_id=customer.id)
    return org.name or org.billing_email


def _amount(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return to_micros(parse_dollars(text))
    except InvalidAmount as exc:
        raise BadRequest(f"{name}: {exc}") from None


@staff_router.post("/staff/{kind}/{customer_id}/balance")
async def staff_set_balance(
    request: Request, kind: Kind, customer_id: Annotated[str, Path(max_length=MAX_EMAIL)]
) -> Response:
    staff, form, customer = await staff_form(request, kind, customer_id)
    reason = form.get("reason", "").strip()
    if not reason:
        raise BadRequest("a reason is required: it is kept in the ledger")
    if len(reason) > MAX_REASON:
        raise BadRequest(f"a reason is at most {MAX_REASON} characters")
    monthly, stable = _amount(form, "monthly"), _amount(form, "stable")
    if monthly is None and stable is None:
        raise BadRequest("give a monthly or a stable amount (or both)")
    async with transaction(engine_of(request)) as conn:
        await set_balance(
            conn,
            catalog=catalog_of(request),
            customer=customer,
            monthly_micros=monthly,
            stable_micros=stable,
            actor=staff.id,
            now=now_of(request),
            note=reason,
        )
    return redirect(f"/console/staff/{kind}/{customer.id}")


@staff_router.post("/staff/user/{customer_id}/plan")
async def staff_set_plan(
    request: Request, customer_id: Annotated[str, Path(max_length=MAX_EMAIL)]
) -> Response:
    """Staff: a user's plan, as PUT /users/{id}/payment/subscriptions (a plan change like any
    other, the staff user as actor)."""
    staff, form, customer = await staff_form(request, "user", customer_id)
    plan = _tier(form.get("tier", ""), catalog_of(request), "user")
    async with transaction(engine_of(request)) as conn:
        await change_plan(
            conn,
            catalog=catalog_of(request),
            customer=customer,
            tier=TierName(plan.name),
            pay_annually=None,
            actor=staff.id,
            now=now_of(request),
        )
    return redirect(f"/console/staff/user/{customer.id}")


_ENTERPRISE_PRICE: TypeAdapter[OptionFlat | OptionPerUser] = TypeAdapter(
    EnterpriseSubscriptionTierPrice
)


@staff_router.post("/staff/org/{customer_id}/enterprise-price")
async def staff_set_enterprise_price(
    request: Request, customer_id: Annotated[str, Path(max_length=64)]
) -> Response:
    """Staff: the price sales agreed with an org, as PUT /orgs/{id}/enterprise/pricing."""
    _staff, form, customer = await staff_form(request, "org", customer_id)
    if catalog_of(request).plan(TierName.ENTERPRISE) is None:
        raise BadRequest("the catalog offers no enterprise tier")
    try:
        price = _ENTERPRISE_PRICE.validate_python(
            {
                "type": form.get("type", ""),
                "interval": form.get("interval", ""),
                "price": parse_dollars(form.get("price", "").strip()),
            }
        )
    except InvalidAmount as exc:
        raise BadRequest(f"price: {exc}") from None
    except ValidationError as exc:
        raise BadRequest(describe_validation(exc.errors())) from None
    async with transaction(engine_of(request)) as conn:
        await set_enterprise_price(conn, org=customer, price=price, now=now_of(request))
    return redirect(f"/console/staff/org/{customer.id}")


# --- the sign-in link API (documented): for the product's backend and for staff ---


class ConsoleLinkRequest(BaseModel):
    """Whom the link signs in."""

    model_config = {"extra": "forbid"}
    email: str = Field(
        max_length=MAX_EMAIL,
        pattern=f"^{EMAIL_PATTERN}$",
        description="The user's email address",
    )


class ConsoleLink(BaseModel):
    """A single-use sign-in link to the console; it expires at `expires_at`."""

    url: str
    expires_at: datetime


async def link_issuer(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    if principal.service_name is None and not (principal.user and principal.user.is_staff):
        raise Forbidden("only staff or a service token may create console sign-in links")
    return principal


def console_url(request: Request) -> str:
    base: str | None = request.app.state.public_url
    return (base or str(request.base_url)).rstrip("/") + "/console/"


@api_router.post(
    "/console/links",
    response_model=ConsoleLink,
    status_code=201,
    responses=errors(403, 404, 409),
)
async def create_console_link(
    body: ConsoleLinkRequest,
    request: Request,
    issuer: Annotated[Principal, Depends(link_issuer)],
    engine: Engine,
    now: Now,
) -> ConsoleLink:
    """Staff or a service (the product's backend): a single-use link, valid for 15 minutes,
    that signs the user in to the console. Hand it to the user; never log it."""
    async with transaction(engine) as conn:
        user = await find_user(conn, id_or_email=body.email)
        if user.is_staff and issuer.user is None:
            # A service signs in the product's users: a staff session would give a token that
            # may only report usage every staff power (balances, refunds, plans).
            raise Forbidden("only staff may create a console sign-in link for a staff user")
        link = await service.create_link(conn, user=user, created_by=issuer.token_id, now=now)
    return ConsoleLink(url=link_url(console_url(request), link.secret), expires_at=link.expires_at)


def link_url(console: str, secret: str) -> str:
    return f"{console}link?secret={secret}"
