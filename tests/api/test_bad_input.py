"""The bad-input table: every rule of issues 2 and 7 about input, each case one test.

A bad case asserts its status, the error shape and code, a message that says what is wrong
(naming the field where there is one), and that nothing changed: the customer's balance as
staff read it, its ledger entry count, its subscription, and every row of the database.
The positive cases of the same rules follow the table.
"""

import base64
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Person, World
from tests.support.database import dump
from tests.support.errors import assert_error
from zoopay.accounts.service import Org
from zoopay.db.tables import balances, ledger_entries, subscriptions

MONTHLY = "monthly_api_credits_remaining_monetary_value"
STABLE = "stable_api_credits_remaining_monetary_value"
MIB = 1024 * 1024
JSON = {"content-type": "application/json"}
ABSENT: Any = object()


@dataclass(frozen=True)
class Scene:
    staff: Person
    user: Person  # on free, $7.25 stable; in no org
    admin: Person
    member: Person
    org: Org  # on team, $3.50 stable
    engine: AsyncEngine

    def caller(self, name: str) -> Person:
        people = {"staff": self.staff, "user": self.user, "admin": self.admin}
        if name == "stranger":  # a token that is no one's
            return Person(self.user.user, "zoo_not-a-token-of-anyone")
        return people[name]

    def path_args(self) -> dict[str, str]:
        return {
            "user": self.user.id,
            "org": self.org.id,
            "member": self.member.id,
            "admin": self.admin.id,
            "staff": self.staff.id,
            "new": str(uuid.uuid4()),
        }


async def build_scene(world: World, engine: AsyncEngine, client: httpx.AsyncClient) -> Scene:
    staff = await world.user(staff=True)
    user, admin, member = await world.user(), await world.user(), await world.user()
    org = await world.org(admin, member)
    setup = [
        await client.put(
            f"/users/{user.id}/payment/balance", json={STABLE: "7.25"}, headers=staff.headers
        ),
        await client.put(
            "/org/payment/subscriptions", json={"modeling_app": "team"}, headers=admin.headers
        ),
        await client.put(
            f"/orgs/{org.id}/payment/balance", json={STABLE: "3.5"}, headers=staff.headers
        ),
    ]
    assert [r.status_code for r in setup] == [200, 200, 200], [r.text for r in setup]
    return Scene(staff, user, admin, member, org, engine)


@dataclass(frozen=True)
class Snapshot:
    balance: dict[str, Any]
    ledger_entries: int
    subscription: dict[str, Any] | None
    database: dict[str, list[dict[str, Any]]]


async def snapshot(client: httpx.AsyncClient, scene: Scene, customer: str) -> Snapshot:
    """What a bad request must leave alone, for the customer it aims at (a user or the org)."""
    customer_id = scene.user.id if customer == "user" else scene.org.id
    path = f"/{customer}s/{customer_id}/payment/balance"
    balance = await client.get(path, headers=scene.staff.headers)
    assert balance.status_code == 200, balance.text
    async with scene.engine.connect() as conn:
        entries = (
            await conn.execute(
                select(func.count())
                .select_from(ledger_entries)
                .where(ledger_entries.c.customer_id == customer_id)
            )
        ).scalar_one()
        row = (
            (
                await conn.execute(
                    select(subscriptions).where(subscriptions.c.customer_id == customer_id)
                )
            )
            .mappings()
            .first()
        )
    return Snapshot(balance.json(), entries, dict(row) if row else None, await dump(scene.engine))


Content = bytes | Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True)
class Bad:
    """One bad request, what it must get, and whose state it must not touch."""

    id: str
    method: str
    path: str
    caller: str
    status: int
    mentions: tuple[str, ...]
    body: Any = ABSENT  # sent as JSON
    content: Content | None = None  # sent as is
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    customer: str = "user"


def raw(*pairs: tuple[str, str]) -> bytes:
    """A JSON object written by hand, so that NaN, Infinity and exact digits survive."""
    return ("{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}").encode()


# --- amounts ------------------------------------------------------------------------------------

# (label, JSON text of the amount, what the message must say besides the field name)
BAD_AMOUNTS = [
    ("negative", "-1", "negative"),
    ("negative string", '"-0.01"', "negative"),
    ("negative micro", "-0.000001", "negative"),
    ("NaN token", "NaN", "NaN"),
    ("Infinity token", "Infinity", "Infinity"),
    ("-Infinity token", "-Infinity", "Infinity"),
    ("NaN string", '"NaN"', "not a decimal amount"),
    ("Infinity string", '"Infinity"', "not a decimal amount"),
    ("-Infinity string", '"-Infinity"', "not a decimal amount"),
    ("sNaN string", '"sNaN"', "not a decimal amount"),
    ("a micro over a billion", "1000000000.000001", "exceed"),
    ("a billion and one", "1000000001", "exceed"),
    ("1e10 number", "1e10", "exceed"),
    ("1e10 string", '"1e10"', "not a decimal amount"),
    ("exponent string", '"2.5e1"', "not a decimal amount"),
    ("padded string", '" 5 "', "not a decimal amount"),
    ("signed string", '"+5"', "not a decimal amount"),
    ("underscored string", '"1_000"', "not a decimal amount"),
    ("1E+400", "1E+400", "exceed"),
    ("7 decimals", "0.1234567", "6 decimal places"),
    ("7 decimals string", '"0.1234567"', "6 decimal places"),
    ("float noise", "0.30000000000000004", "6 decimal places"),
    ("a tenth of a micro", '"19.0000001"', "6 decimal places"),
    ("1e-7", "1e-7", "6 decimal places"),
    ("true", "true", "JSON number or a decimal string"),
    ("false", "false", "JSON number or a decimal string"),
    ("list", "[]", "JSON number or a decimal string"),
    ("list of a number", '["5"]', "JSON number or a decimal string"),
    ("object", "{}", "JSON number or a decimal string"),
    ("abc", '"abc"', "not a decimal amount"),
    ("empty string", '""', "not a decimal amount"),
    ("thousands separator", '"1,000"', "not a decimal amount"),
    ("currency sign", '"$5"', "not a decimal amount"),
]
JSON_TOKENS = {"NaN", "Infinity", "-Infinity"}


def amount_cases() -> list[Bad]:
    cases = []
    for customer, target in (("user", "/users/{user}"), ("org", "/orgs/{org}")):
        for field_name in (MONTHLY, STABLE):
            for label, text, says in BAD_AMOUNTS:
                # A bare NaN is refused while parsing, before any field is known.
                mentions = (says,) if text in JSON_TOKENS else (field_name, says)
                cases.append(
                    Bad(
                        f"{customer} balance {field_name.split('_')[0]}: {label}",
                        "PUT",
                        f"{target}/payment/balance",
                        "staff",
                        400,
                        mentions,
                        content=raw((field_name, text)),
                        headers=JSON,
                        customer=customer,
                    )
                )
    return cases


def enterprise_price_cases() -> list[Bad]:
    def price(label: str, body: Any, *mentions: str, content: bytes | None = None) -> Bad:
        return Bad(
            f"enterprise price: {label}",
            "PUT",
            "/orgs/{org}/enterprise/pricing",
            "staff",
            400,
            mentions,
            body=body if content is None else ABSENT,
            content=content,
            headers=JSON if content is not None else {},
            customer="org",
        )

    flat = {"type": "flat", "interval": "month"}
    return [
        price("negative price", {**flat, "price": -5}, "price", "negative"),
        price("negative price string", {**flat, "price": "-0.01"}, "price", "negative"),
        price("missing interval", {"type": "flat", "price": 5}, "interval", "required"),
        price("missing price", {"type": "per_user", "interval": "year"}, "price", "required"),
        price("type enterprise", {"type": "enterprise"}, "enterprise"),
        price("type enterprise with a price", {**flat, "type": "enterprise", "price": 5}, "tag"),
        price("missing type", {"interval": "month", "price": 5}, "type"),
        price("type gold", {**flat, "type": "gold", "price": 5}, "gold"),
        price("interval fortnight", {**flat, "interval": "fortnight", "price": 5}, "interval"),
        price("price abc", {**flat, "price": "abc"}, "price", "not a decimal amount"),
        price("price true", {**flat, "price": True}, "price"),
        price("price 7 decimals", {**flat, "price": "1.0000001"}, "price", "6 decimal places"),
        price("price over a billion", {**flat, "price": "1000000000.01"}, "price", "exceed"),
        price("price NaN string", {**flat, "price": "NaN"}, "price", "not a decimal amount"),
        price(
            "price NaN token",
            None,
            "NaN",
            content=raw(("type", '"flat"'), ("interval", '"month"'), ("price", "NaN")),
        ),
        price("a discount field", {**flat, "price": 5, "discount": 10}, "discount", "known field"),
        price("a list", [flat], "dictionary"),
        price("null", None, "dictionary", content=b"null"),
    ]


# --- bodies that are not what a write takes -------------------------------------------------------

WRITES = [
    # (label, method, path, caller, customer, a valid body)
    ("user balance", "PUT", "/users/{user}/payment/balance", "staff", "user", {STABLE: "1"}),
    ("org balance", "PUT", "/orgs/{org}/payment/balance", "staff", "org", {STABLE: "1"}),
    (
        "own plan POST",
        "POST",
        "/user/payment/subscriptions",
        "user",
        "user",
        {"modeling_app": "pro"},
    ),
    ("own plan PUT", "PUT", "/user/payment/subscriptions", "user", "user", {"modeling_app": "pro"}),
    (
        "org plan POST",
        "POST",
        "/org/payment/subscriptions",
        "admin",
        "org",
        {"modeling_app": "team"},
    ),
    ("org plan PUT", "PUT", "/org/payment/subscriptions", "admin", "org", {"modeling_app": "team"}),
    (
        "user plan",
        "PUT",
        "/users/{user}/payment/subscriptions",
        "staff",
        "user",
        {"modeling_app": "pro"},
    ),
    (
        "enterprise price",
        "PUT",
        "/orgs/{org}/enterprise/pricing",
        "staff",
        "org",
        {"type": "flat", "interval": "month", "price": "10"},
    ),
    ("new org", "POST", "/org", "user", "user", {"name": "Mistyped Co"}),
    ("new member", "POST", "/org/members", "admin", "org", {"email": "{user}", "role": "member"}),
    ("org details", "PUT", "/org", "admin", "org", {"name": "Renamed"}),
    ("member role", "PUT", "/org/members/{member}", "admin", "org", {"role": "admin"}),
    (
        "staff adds a member",
        "POST",
        "/orgs/{org}/members",
        "staff",
        "org",
        {"email": "{user}", "role": "member"},
    ),
    ("billing POST", "POST", "/user/payment", "user", "user", {"name": "N", "phone": ""}),
    ("billing PUT", "PUT", "/user/payment", "user", "user", {"name": "N", "phone": ""}),
    ("org billing POST", "POST", "/org/payment", "admin", "org", {"name": "N"}),
    ("org billing PUT", "PUT", "/org/payment", "admin", "org", {"name": "N"}),
    ("VAT id", "PUT", "/user/payment/tax-id", "user", "user", {"vat_id": "DE136695976"}),
    ("org VAT id", "PUT", "/org/payment/tax-id", "admin", "org", {"vat_id": "DE136695976"}),
    (
        "threshold",
        "PUT",
        "/user/billing/usage-collection-threshold",
        "user",
        "user",
        {"amount": "20", "expected_version": 0},
    ),
    (
        "org threshold",
        "PUT",
        "/org/billing/usage-collection-threshold",
        "admin",
        "org",
        {"amount": "20", "expected_version": 0},
    ),
    (
        "staff's user threshold",
        "PUT",
        "/users/{user}/billing/usage-collection-threshold",
        "staff",
        "user",
        {"amount": "2", "expected_version": 0},
    ),
    (
        "staff's org threshold",
        "PUT",
        "/orgs/{org}/billing/usage-collection-threshold",
        "staff",
        "org",
        {"amount": "2", "expected_version": 0},
    ),
    (
        "confirm",
        "POST",
        "/processor/setup-intents/confirm",
        "user",
        "user",
        {"client_secret": "seti_x_secret_y", "payment_method": "pm_card_visa"},
    ),
]


async def _chunks_over_a_mebibyte() -> AsyncIterator[bytes]:
    yield b'{"stable_api_credits_remaining_monetary_value": "1", "padding": "'
    for _ in range(16):
        yield b"x" * (64 * 1024)
    yield b'"}'


def _padded(size: int) -> bytes:
    """A valid JSON body setting stable to $1, padded with whitespace to exactly `size` bytes."""
    body = raw((STABLE, '"1"'))
    return body[:-1] + b" " * (size - len(body)) + b"}"


def body_cases() -> list[Bad]:
    cases = []
    for write in WRITES:
        valid = write[-1]
        text = str(valid).replace("'", '"').encode()
        cases += [
            write_case(
                write, "unknown field", 400, "colour", "known field", body={**valid, "colour": 1}
            ),
            write_case(
                write, "invalid JSON", 400, "not valid JSON", content=b'{"name": ', headers=JSON
            ),
            write_case(write, "a JSON list", 400, "dictionary", body=[valid]),
            write_case(write, "no body", 400, "required", content=b"", headers=JSON),
            write_case(
                write,
                "text/plain",
                415,
                "application/json",
                "text/plain",
                content=text,
                headers={"content-type": "text/plain"},
            ),
            write_case(
                write,
                "form-encoded",
                415,
                "application/json",
                "x-www-form-urlencoded",
                content=b"name=Mistyped+Co",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            write_case(
                write,
                "over 1 MiB with Content-Length",
                413,
                "larger than 1048576",
                content=_padded(MIB + 1),
                headers=JSON,
            ),
            write_case(
                write,
                "over 1 MiB streamed",
                413,
                "larger than 1048576",
                content=_chunks_over_a_mebibyte,
                headers=JSON,
            ),
        ]
    return cases


def write_case(
    write: tuple[str, str, str, str, str, Any],
    what: str,
    status: int,
    *mentions: str,
    **request: Any,
) -> Bad:
    label, method, path, caller, customer, _ = write
    return Bad(
        f"{label}: {what}", method, path, caller, status, mentions, customer=customer, **request
    )


def balance_body(what: str, status: int, *mentions: str, **request: Any) -> Bad:
    return Bad(
        f"user balance: {what}",
        "PUT",
        "/users/{user}/payment/balance",
        "staff",
        status,
        mentions,
        **request,
    )


MORE_BODY_CASES = [
    balance_body(
        "mistyped field name",
        400,
        "monthly_api_credits_remaining_monetary_valu",
        "not a known field",
        body={"monthly_api_credits_remaining_monetary_valu": 5},
    ),
    balance_body(
        "a credits field, which is not writable",
        400,
        "monthly_api_credits_remaining",
        body={STABLE: "5", "monthly_api_credits_remaining": 40},
    ),
    balance_body("one good amount, one bad", 400, STABLE, body={MONTHLY: "5", STABLE: -1}),
    balance_body("two bad amounts", 400, MONTHLY, STABLE, body={MONTHLY: -1, STABLE: "abc"}),
    balance_body("single quotes", 400, "not valid JSON", content=b"{'a': 1}", headers=JSON),
    balance_body(
        "trailing comma", 400, "not valid JSON", content=raw((STABLE, "1,")), headers=JSON
    ),
    balance_body("a bare word", 400, "not valid JSON", content=b"hello", headers=JSON),
    balance_body("invalid UTF-8", 400, "not valid JSON", content=b'{"a": "\xff"}', headers=JSON),
    balance_body(
        "nesting too deep to parse",
        400,
        "not valid JSON",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers=JSON,
    ),
    balance_body(
        "a 5000-digit integer",
        400,
        "not valid JSON",
        content=raw((STABLE, "1" + "0" * 5000)),
        headers=JSON,
    ),
    balance_body("a JSON string", 400, "dictionary", body="5"),
    balance_body("a JSON number", 400, "dictionary", body=5),
    balance_body("JSON null", 400, "dictionary", content=b"null", headers=JSON),
    balance_body(
        "application/xml",
        415,
        "application/xml",
        content=b"<balance/>",
        headers={"content-type": "application/xml"},
    ),
    balance_body(
        "multipart",
        415,
        "multipart/form-data",
        content=b"--b\r\n\r\n5\r\n--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    ),
    balance_body(
        "a content type that only starts like JSON",
        415,
        "application/jsonx",
        content=raw((STABLE, "1")),
        headers={"content-type": "application/jsonx"},
    ),
]


# --- ids in paths ------------------------------------------------------------------------------

ORG_PATHS = [
    ("GET", "/orgs/{id}/payment/balance", ABSENT),
    ("PUT", "/orgs/{id}/payment/balance", {STABLE: "1"}),
    ("PUT", "/orgs/{id}/enterprise/pricing", {"type": "flat", "interval": "month", "price": 1}),
    ("POST", "/orgs/{id}/members", {"email": "{user}", "role": "member"}),
    ("GET", "/orgs/{id}/billing/usage-collection-threshold", ABSENT),
    ("PUT", "/orgs/{id}/billing/usage-collection-threshold", {"amount": 2, "expected_version": 0}),
]
USER_PATHS = [
    ("GET", "/users/{id}/payment/balance", ABSENT),
    ("PUT", "/users/{id}/payment/balance", {STABLE: "1"}),
    ("PUT", "/users/{id}/payment/subscriptions", {"modeling_app": "pro"}),
    ("GET", "/users/{id}/billing/usage-collection-threshold", ABSENT),
    ("PUT", "/users/{id}/billing/usage-collection-threshold", {"amount": 2, "expected_version": 0}),
]
MALFORMED_ORG_IDS = [
    "not-a-uuid",
    "1234",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-0000000000000",
    "someone@example.com",
]
# (id as it goes in the path, what the message must say)
MALFORMED_USER_IDS = [
    ("not-a-uuid", "user id"),
    ("12345", "user id"),
    ("00000000-0000-0000-0000-00000000000g", "user id"),
    ("a@b@c", "email address"),
    ("@example.com", "email address"),
    ("someone@", "email address"),
    ("with%20space@example.com", "email address"),
    ("nul%00@example.com", "email address"),
    ("tab%09@example.com", "email address"),
]


def path_cases() -> list[Bad]:
    cases = []
    for method, template, body in ORG_PATHS:
        for bad in MALFORMED_ORG_IDS:
            path = template.replace("{id}", bad)
            cases.append(Bad(f"{method} {path}", method, path, "staff", 400, ("org id",), body))
        for label, unknown in (("unknown org", "{new}"), ("a user's id as an org id", "{user}")):
            path = template.replace("{id}", unknown)
            cases.append(Bad(f"{method} {template}: {label}", method, path, "staff", 404, (), body))
    for method, template, body in USER_PATHS:
        for bad, says in MALFORMED_USER_IDS:
            path = template.replace("{id}", bad)
            cases.append(Bad(f"{method} {path}", method, path, "staff", 400, (says,), body))
        for label, unknown in (
            ("unknown user id", "{new}"),
            ("unknown email", "nobody@example.com"),
            ("an org's id as a user id", "{org}"),
        ):
            path = template.replace("{id}", unknown)
            cases.append(Bad(f"{method} {template}: {label}", method, path, "staff", 404, (), body))
    return cases


def member_case(label: str, method: str, path: str, status: int, *mentions: str, **kw: Any) -> Bad:
    return Bad(f"{label}", method, path, "admin", status, mentions, customer="org", **kw)


MEMBER_CASES = [
    member_case("get malformed id", "GET", "/org/members/not-a-uuid", 400, "user id"),
    member_case("get unknown user", "GET", "/org/members/{new}", 404, "no member"),
    member_case("get a user of no org", "GET", "/org/members/{user}", 404, "no member"),
    member_case(
        "role of malformed id",
        "PUT",
        "/org/members/not-a-uuid",
        400,
        "user id",
        body={"role": "admin"},
    ),
    member_case(
        "role of a user of no org",
        "PUT",
        "/org/members/{user}",
        404,
        "no member",
        body={"role": "admin"},
    ),
    member_case("role owner", "PUT", "/org/members/{member}", 400, "role", body={"role": "owner"}),
    member_case("role missing", "PUT", "/org/members/{member}", 400, "role", body={}),
    member_case("role null", "PUT", "/org/members/{member}", 400, "role", body={"role": None}),
    member_case(
        "demote the last admin",
        "PUT",
        "/org/members/{admin}",
        409,
        "at least one admin",
        body={"role": "member"},
    ),
    member_case("the last admin leaves", "DELETE", "/org/membership", 409, "admin"),
    member_case("delete the org with a member", "DELETE", "/org", 409, "1 other member"),
    member_case(
        "revoke malformed invitation id", "DELETE", "/org/invitations/x", 400, "invitation id"
    ),
    member_case(
        "revoke unknown invitation", "DELETE", "/org/invitations/{new}", 404, "no invitation"
    ),
    *(
        Bad(
            f"{action} {label}",
            "POST",
            f"/user/org-invitations/{invitation}/{action}",
            "user",
            status,
            (says,),
        )
        for action in ("accept", "decline")
        for label, invitation, status, says in (
            ("malformed invitation id", "not-a-uuid", 400, "invitation id"),
            ("unknown invitation", "{new}", 404, "no invitation"),
        )
    ),
    member_case("remove malformed id", "DELETE", "/org/members/not-a-uuid", 400, "user id"),
    member_case("remove unknown user", "DELETE", "/org/members/{new}", 404, "no member"),
    member_case("remove a user of no org", "DELETE", "/org/members/{user}", 404, "no member"),
    member_case(
        "add malformed email",
        "POST",
        "/org/members",
        400,
        "email address",
        body={"email": "not-an-email", "role": "member"},
    ),
    member_case(
        "add email with NUL",
        "POST",
        "/org/members",
        400,
        "email address",
        body={"email": "a\u0000@example.com", "role": "member"},
    ),
    member_case(
        "add email as a number",
        "POST",
        "/org/members",
        400,
        "email",
        body={"email": 5, "role": "member"},
    ),
    member_case(
        "add with role owner",
        "POST",
        "/org/members",
        400,
        "role",
        body={"email": "{user}", "role": "owner"},
    ),
    member_case(
        "add without a role", "POST", "/org/members", 400, "role", body={"email": "{user}"}
    ),
    member_case(
        "add someone already a member",
        "POST",
        "/org/members",
        409,
        "already belongs",
        body={"email": "{member}", "role": "admin"},
    ),
]


# --- plans -----------------------------------------------------------------------------------


def plan_cases() -> list[Bad]:
    cases = []
    own = [("POST", "/user/payment/subscriptions"), ("PUT", "/user/payment/subscriptions")]
    for method, path in [*own, ("PUT", "/users/{user}/payment/subscriptions")]:
        caller = "user" if path.startswith("/user/") else "staff"
        for body, says in (
            ({"modeling_app": "gold"}, ("modeling_app", "'free'")),
            ({"modeling_app": "team"}, ("modeling_app", "'pro'")),
            ({"modeling_app": "enterprise"}, ("modeling_app",)),
            ({"modeling_app": "PRO"}, ("modeling_app",)),
            ({"modeling_app": ""}, ("modeling_app",)),
            ({"modeling_app": 5}, ("modeling_app",)),
            ({"modeling_app": "plus"}, ("plus", "not offered")),
            ({"modeling_app": "pro", "pay_annually": "yes"}, ("pay_annually",)),
            ({"modeling_app": "pro", "pay_annually": 1}, ("pay_annually",)),
            ({"modeling_ap": "pro"}, ("modeling_ap", "not a known field")),
        ):
            cases.append(Bad(f"{method} {path} {body}", method, path, caller, 400, says, body))
    for method in ("POST", "PUT"):
        path = "/org/payment/subscriptions"
        for body, says in (
            ({"modeling_app": "pro"}, ("modeling_app", "'team'")),
            ({"modeling_app": "free"}, ("modeling_app",)),
            ({"modeling_app": "gold"}, ("modeling_app",)),
            ({"modeling_app": "team", "pay_annually": "no"}, ("pay_annually",)),
        ):
            cases.append(
                Bad(
                    f"{method} {path} {body}",
                    method,
                    path,
                    "admin",
                    400,
                    says,
                    body,
                    customer="org",
                )
            )
    # No enterprise price agreed yet: a 402 that says to contact sales; the org stays on team.
    for method in ("POST", "PUT"):
        cases.append(
            Bad(
                f"{method} /org/payment/subscriptions enterprise without a price",
                method,
                "/org/payment/subscriptions",
                "admin",
                402,
                ("contact sales",),
                {"modeling_app": "enterprise"},
                customer="org",
            )
        )
    cases.append(
        Bad(
            "POST /org/payment/subscriptions when already on team",
            "POST",
            "/org/payment/subscriptions",
            "admin",
            409,
            ("team",),
            {"modeling_app": "team"},
            customer="org",
        )
    )
    return cases


# --- new orgs ----------------------------------------------------------------------------------


def org_case(label: str, body: Any, *mentions: str) -> Bad:
    return Bad(f"new org: {label}", "POST", "/org", "user", 400, mentions, body)


NEW_ORG_CASES = [
    org_case("name over 200 characters", {"name": "n" * 201}, "name", "200"),
    org_case("name with NUL", {"name": "Acme\u0000"}, "name", "NUL"),
    org_case("name a number", {"name": 5}, "name"),
    org_case("phone over 64 characters", {"phone": "1" * 65}, "phone"),
    org_case("domain over 255 characters", {"domain": "d" * 256}, "domain"),
    org_case("image over 2048 characters", {"image": "i" * 2049}, "image"),
    org_case("billing email malformed", {"billing_email": "nope"}, "email address"),
    org_case("auto-join as a string", {"allow_users_in_domain_to_auto_join": "yes"}, "auto_join"),
    org_case("mistyped field", {"nmae": "Acme"}, "nmae", "not a known field"),
]
ORG_CASES = [
    *NEW_ORG_CASES,
    *(
        Bad(
            f"org details: {case.id.removeprefix('new org: ')}",
            "PUT",
            "/org",
            "admin",
            400,
            case.mentions,
            case.body,
            customer="org",
        )
        for case in NEW_ORG_CASES
    ),
]


# --- query parameters ------------------------------------------------------------------------


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def members_query(label: str, params: dict[str, str], *mentions: str) -> Bad:
    return Bad(
        f"members page: {label}",
        "GET",
        "/org/members",
        "admin",
        400,
        mentions,
        params=params,
        customer="org",
    )


def ledger_query(label: str, page_token: str) -> Bad:
    return Bad(
        f"own ledger page: {label}",
        "GET",
        "/user/payment/ledger",
        "user",
        400,
        ("page_token",),
        params={"page_token": page_token},
    )


def invitations_query(path: str, caller: str, params: dict[str, str], *mentions: str) -> Bad:
    label = f"invitations page {path}: {params}"
    return Bad(label, "GET", path, caller, 400, mentions, params=params)


QUERY_CASES = [
    *(
        invitations_query(path, caller, params, mention)
        for path, caller in (("/org/invitations", "admin"), ("/user/org-invitations", "user"))
        for params, mention in (
            ({"limit": "0"}, "limit"),
            ({"page_token": "garbage!!!"}, "page_token"),
            ({"sort_by": "sideways"}, "sort_by"),
        )
    ),
    ledger_query("page_token not a number", "abc"),
    ledger_query("page_token a non-ASCII digit", "\u00b2"),
    ledger_query("page_token past any entry id", "9" * 30),
    ledger_query("page_token negative", "-1"),
    members_query("limit 0", {"limit": "0"}, "limit"),
    members_query("limit -1", {"limit": "-1"}, "limit"),
    members_query("limit 100000", {"limit": "100000"}, "limit"),
    members_query("limit abc", {"limit": "abc"}, "limit"),
    members_query("limit 1.5", {"limit": "1.5"}, "limit"),
    members_query("garbage page_token", {"page_token": "garbage!!!"}, "page_token"),
    members_query("page_token without a key", {"page_token": token("nonsense")}, "page_token"),
    members_query(
        "page_token with a time but no zone",
        {"page_token": token(f"2026-01-01T00:00:00|{uuid.uuid4()}")},
        "page_token",
    ),
    members_query(
        "page_token whose time overflows",
        {"page_token": token(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}")},
        "page_token",
    ),
    members_query(
        "page_token with a row id that is no id",
        {"page_token": token("2026-01-01T00:00:00+00:00|x\u0000")},
        "page_token",
    ),
    members_query("sort_by sideways", {"sort_by": "sideways"}, "sort_by"),
    Bad(
        "own balance: include_total_due=maybe",
        "GET",
        "/user/payment/balance",
        "user",
        400,
        ("include_total_due",),
        params={"include_total_due": "maybe"},
    ),
    Bad(
        "user balance: include_total_due=2",
        "GET",
        "/users/{user}/payment/balance",
        "staff",
        400,
        ("include_total_due",),
        params={"include_total_due": "2"},
    ),
]

# --- reported calls out of bounds, bodies before a token, slashes (issue 7) ------------------


def report_case(label: str, *mentions: str, **fields: Any) -> Bad:
    call = {
        "id": "6f1f5d4e-4a6f-4a8e-9a53-0f3f1f5d4e4a",
        "user_id": "{user_id}",
        "endpoint": "/modeling/run",
        "method": "POST",
        "started_at": "2026-01-15T12:00:00Z",
        "completed_at": "2026-01-15T12:00:01Z",
        **fields,
    }
    return Bad(f"report: {label}", "POST", "/api-calls", "staff", 400, mentions, body=call)


def stranger_case(label: str, **request: Any) -> Bad:
    """A body that would be refused, sent with a token that is no one's: 401 comes first."""
    return Bad(
        f"bad token with {label}",
        "PUT",
        "/users/{user}/payment/balance",
        "stranger",
        401,
        ("token",),
        **request,
    )


BOUNDS_CASES = [
    report_case("started in 9999", "started_at", "2100", started_at="9999-01-01T00:00:00Z"),
    report_case("completed in 9999", "completed_at", "2100", completed_at="9999-01-01T00:00:00Z"),
    report_case("started in 1999", "started_at", "2000", started_at="1999-12-31T23:59:59Z"),
    report_case("lasting 25 hours", "24 hours", completed_at="2026-01-16T13:00:00Z"),
    report_case(
        "lasting years at 1e9", "24 hours", price=10**9, completed_at="2029-01-01T00:00:00Z"
    ),
    report_case("priced over 10,000", "10000.00", price="10000.01"),
    stranger_case("invalid JSON", content=b'{"name": ', headers=JSON),
    stranger_case("a JSON list", body=[1]),
    stranger_case("over 1 MiB", content=_padded(MIB + 1), headers=JSON),
    stranger_case("text/plain", content=b"x", headers={"content-type": "text/plain"}),
    Bad("trailing slash", "GET", "/users/{user}/payment/balance/", "staff", 404, ("not found",)),
    Bad("trailing slash, hot", "POST", "/api-calls/", "staff", 404, ("not found",), body={}),
]

# --- tokens and service accounts ---------------------------------------------------------------


def token_cases() -> list[Bad]:
    cases = []
    for prefix, caller, customer in (
        ("/user/api-tokens", "user", "user"),
        ("/org/service-accounts", "admin", "org"),
    ):
        requests: list[tuple[str, str, str, int, tuple[str, ...], dict[str, str] | None]] = []
        for method in ("GET", "DELETE"):
            for bad in ("not-a-uuid", "00000000-0000-0000-0000-00000000000g", "zoo_secret"):
                path = f"{prefix}/{bad}"
                requests.append((f"{method} {path}", method, path, 400, ("token id",), None))
            for label, unknown in (("unknown id", "{new}"), ("a user's id", "{user}")):
                path = f"{prefix}/{unknown}"
                requests.append(
                    (f"{method} {prefix}: {label}", method, path, 404, ("no token",), None)
                )
        for label, value, mentions in (
            ("a label over 200 characters", "l" * 201, ("label", "200")),
            ("a label with NUL", "ci\x00", ("label", "NUL")),
        ):
            requests.append(
                (f"POST {prefix}: {label}", "POST", prefix, 400, mentions, {"label": value})
            )
        for label, params, mention in (
            ("limit 0", {"limit": "0"}, "limit"),
            ("limit abc", {"limit": "abc"}, "limit"),
            ("garbage page_token", {"page_token": "garbage!!!"}, "page_token"),
            ("sort_by sideways", {"sort_by": "sideways"}, "sort_by"),
        ):
            requests.append((f"GET {prefix}: {label}", "GET", prefix, 400, (mention,), params))
        cases += [
            Bad(name, method, path, caller, status, says, params=params, customer=customer)
            for name, method, path, status, says, params in requests
        ]
    return cases


# --- invoices and credits (issue 9) ------------------------------------------------------------


def invoice_cases() -> list[Bad]:
    cases = []
    for prefix, caller, customer in (("/user", "user", "user"), ("/org", "admin", "org")):
        path = f"{prefix}/payment/credits"
        for label, text, says in BAD_AMOUNTS[:8] + BAD_AMOUNTS[20:24]:
            mentions = (says,) if text in JSON_TOKENS else ("amount", says)
            cases.append(
                Bad(
                    f"POST {path}: {label}",
                    "POST",
                    path,
                    caller,
                    400,
                    mentions,
                    content=raw(("amount", text)),
                    headers=JSON,
                    customer=customer,
                )
            )
        for label, body, mentions in (
            ("a fraction of a cent", {"amount": "25.001"}, ("whole cents",)),
            ("under a dollar", {"amount": "0.99"}, ("1.00",)),
            ("over 100,000", {"amount": "100000.01"}, ("100000.00",)),
            ("zero", {"amount": 0}, ("1.00",)),
            ("no amount", {}, ("amount",)),
            ("an unknown field", {"amount": "5", "currency": "eur"}, ("currency",)),
        ):
            cases.append(
                Bad(
                    f"POST {path}: {label}",
                    "POST",
                    path,
                    caller,
                    400,
                    mentions,
                    body=body,
                    customer=customer,
                )
            )
        listing = f"{prefix}/payment/invoices"
        for label, params, mention in (
            ("limit 0", {"limit": "0"}, "limit"),
            ("limit 1001", {"limit": "1001"}, "limit"),
            ("garbage page_token", {"page_token": "garbage!!!"}, "page_token"),
        ):
            cases.append(
                Bad(
                    f"GET {listing}: {label}",
                    "GET",
                    listing,
                    caller,
                    400,
                    (mention,),
                    params=params,
                    customer=customer,
                )
            )
        for method, tail in (("GET", ""), ("GET", "/pdf"), ("POST", "/pay")):
            bad = f"{listing}/not-a-uuid{tail}"
            cases.append(
                Bad(f"{method} {bad}", method, bad, caller, 400, ("invoice id",), customer=customer)
            )
            unknown = f"{listing}/{{new}}{tail}"
            cases.append(
                Bad(
                    f"{method} {listing}/unknown{tail}",
                    method,
                    unknown,
                    caller,
                    404,
                    ("no invoice",),
                    customer=customer,
                )
            )
    refund = "/invoices/{new}/refund"
    for label, body, status, mentions in (
        ("no idempotency_key", {"amount": "1.00"}, 400, ("idempotency_key",)),
        ("a key with spaces", {"amount": "1", "idempotency_key": "a b"}, 400, ("idempotency_key",)),
        (
            "a fraction of a cent",
            {"amount": "1.001", "idempotency_key": "k"},
            400,
            ("whole cents",),
        ),
        ("an amount of abc", {"amount": "abc", "idempotency_key": "k"}, 400, ("amount",)),
        ("an unknown invoice", {"amount": "1", "idempotency_key": "k"}, 404, ("no invoice",)),
    ):
        cases.append(
            Bad(f"POST {refund}: {label}", "POST", refund, "staff", status, mentions, body=body)
        )
    for label, params, mention in (
        ("no signature", {"expires": "1"}, "signature"),
        ("a signature that is not hex", {"expires": "1", "signature": "z" * 64}, "signature"),
        ("expires abc", {"expires": "abc", "signature": "0" * 64}, "expires"),
    ):
        link = "/invoices/{new}/pdf"
        cases.append(
            Bad(f"GET {link}: {label}", "GET", link, "user", 400, (mention,), params=params)
        )
    return cases


# --- payments (issue 9) ------------------------------------------------------------------------


def billing_case(label: str, body: Any, *mentions: str, path: str = "/user/payment") -> Bad:
    caller, customer = ("admin", "org") if path.startswith("/org") else ("user", "user")
    return Bad(
        f"billing: {label}", "POST", path, caller, 400, mentions, body=body, customer=customer
    )


THRESHOLD = "/user/billing/usage-collection-threshold"


def threshold_case(label: str, body: Any, *mentions: str) -> Bad:
    return Bad(f"threshold: {label}", "PUT", THRESHOLD, "user", 400, mentions, body=body)


def reset_case(label: str, params: dict[str, str], *mentions: str) -> Bad:
    return Bad(
        f"threshold reset: {label}", "DELETE", THRESHOLD, "user", 400, mentions, params=params
    )


def confirm_case(label: str, body: Any, *mentions: str) -> Bad:
    path = "/processor/setup-intents/confirm"
    return Bad(f"confirm: {label}", "POST", path, "user", 400, mentions, body=body)


PAYMENT_CASES = [
    billing_case("a country that is no ISO code", {"address": {"country": "ZZ"}}, "country"),
    billing_case("a lower-case country", {"address": {"country": "us"}}, "country"),
    billing_case("an address without a country", {"address": {"zip": "94107"}}, "country"),
    billing_case("a name over 200 characters", {"name": "n" * 201}, "name", "200"),
    billing_case("a phone over 64 characters", {"phone": "1" * 65}, "phone", "64"),
    billing_case("a NUL in the name", {"name": "A\x00"}, "name", "NUL"),
    billing_case(
        "a zip over 32 characters", {"address": {"country": "US", "zip": "9" * 33}}, "zip"
    ),
    billing_case("an unknown address field", {"address": {"country": "US", "town": "x"}}, "town"),
    billing_case("org: a number for a name", {"name": 5}, "name", path="/org/payment"),
    Bad(
        "VAT id: a bad checksum",
        "PUT",
        "/user/payment/tax-id",
        "user",
        400,
        ("vat_id", "not a valid EU VAT id"),
        body={"vat_id": "DE136695977"},
    ),
    Bad(
        "VAT id: empty",
        "PUT",
        "/user/payment/tax-id",
        "user",
        400,
        ("vat_id",),
        body={"vat_id": ""},
    ),
    Bad(
        "VAT id: over 32 characters",
        "PUT",
        "/org/payment/tax-id",
        "admin",
        400,
        ("vat_id", "32"),
        body={"vat_id": "DE" + "1" * 31},
        customer="org",
    ),
    threshold_case("a negative amount", {"amount": "-1", "expected_version": 0}, "amount"),
    threshold_case("an amount as words", {"amount": "ten", "expected_version": 0}, "amount"),
    threshold_case(
        "an amount below the customer's bounds",
        {"amount": "9.999999", "expected_version": 0},
        "between 10.00 and 10000.00",
    ),
    threshold_case(
        "an amount above the customer's bounds",
        {"amount": 10001, "expected_version": 0},
        "between 10.00 and 10000.00",
    ),
    threshold_case("no expected_version", {"amount": "20"}, "expected_version"),
    threshold_case(
        "a negative expected_version", {"amount": "20", "expected_version": -1}, "expected_version"
    ),
    threshold_case(
        "a string expected_version", {"amount": "20", "expected_version": "0"}, "expected_version"
    ),
    threshold_case(
        "a fractional expected_version",
        {"amount": "20", "expected_version": 0.5},
        "expected_version",
    ),
    reset_case("no expected_version", {}, "expected_version"),
    reset_case("a negative expected_version", {"expected_version": "-1"}, "expected_version"),
    reset_case("expected_version abc", {"expected_version": "abc"}, "expected_version"),
    confirm_case(
        "an empty client secret",
        {"client_secret": "", "payment_method": "pm_card_visa"},
        "client_secret",
    ),
    confirm_case(
        "a client secret over 200 characters",
        {"client_secret": "s" * 201, "payment_method": "pm_card_visa"},
        "client_secret",
    ),
    confirm_case("no payment method", {"client_secret": "s"}, "payment_method"),
    confirm_case(
        "a number for a payment method",
        {"client_secret": "s", "payment_method": 4242},
        "payment_method",
    ),
    *[
        Bad(
            f"GET {path}: {label}",
            "GET",
            path,
            caller,
            400,
            (mention,),
            params=params,
            customer=who,
        )
        for path, caller, who in (
            ("/user/payment/methods", "user", "user"),
            ("/org/payment/methods", "admin", "org"),
        )
        for label, params, mention in (
            ("limit 0", {"limit": "0"}, "limit"),
            ("limit 1001", {"limit": "1001"}, "limit"),
            ("limit abc", {"limit": "abc"}, "limit"),
            ("garbage page_token", {"page_token": "garbage!!!"}, "page_token"),
            ("a page_token of another listing", {"page_token": "MjAyNi0wMS0xNXx4"}, "page_token"),
        )
    ],
    *[
        Bad(f"{method} {path}: a malformed id", method, path, caller, 400, ("id",), customer=who)
        for method, path, caller, who in (
            ("DELETE", "/user/payment/methods/not-a-card", "user", "user"),
            ("POST", "/user/payment/methods/pm_x!/default", "user", "user"),
            ("DELETE", "/org/payment/methods/card_1", "admin", "org"),
            ("POST", "/org/payment/methods/pm_/default", "admin", "org"),
        )
    ],
    *[
        Bad(
            f"{path}: return_url {label}",
            "GET",
            path,
            caller,
            400,
            ("return_url",),
            params={"return_url": url},
            customer=who,
        )
        for path, caller, who in (
            ("/user/payment/method-portal-link", "user", "user"),
            ("/org/payment/method-portal-link", "admin", "org"),
        )
        for label, url in (
            ("javascript", "javascript:alert(1)"),
            ("relative", "/billing"),
            ("over 2048 characters", "https://x.test/" + "a" * 2048),
        )
    ],
]

CASES = [
    *PAYMENT_CASES,
    *BOUNDS_CASES,
    *amount_cases(),
    *enterprise_price_cases(),
    *body_cases(),
    *MORE_BODY_CASES,
    *path_cases(),
    *MEMBER_CASES,
    *plan_cases(),
    *ORG_CASES,
    *QUERY_CASES,
    *token_cases(),
    *invoice_cases(),
]


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


def _fill(value: Any, scene: Scene) -> Any:
    """Put the scene's ids and emails where a case says {user}, {member}, {user_id} ..."""
    emails = {
        "{user}": scene.user.email,
        "{member}": scene.member.email,
        "{user_id}": scene.user.id,
    }
    if isinstance(value, dict):
        return {key: _fill(item, scene) for key, item in value.items()}
    if isinstance(value, str) and value in emails:
        return emails[value]
    return value


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, case: Bad
) -> None:
    scene = await build_scene(world, engine, client)
    before = await snapshot(client, scene, case.customer)

    request: dict[str, Any] = {"params": case.params}
    if case.body is not ABSENT:
        request["json"] = _fill(case.body, scene)
    if case.content is not None:
        request["content"] = case.content if isinstance(case.content, bytes) else case.content()
    headers = {**scene.caller(case.caller).headers, **case.headers}
    path = case.path.format(**scene.path_args()) if "{" in case.path else case.path
    response = await client.request(case.method, path, headers=headers, **request)

    assert_error(response, case.status)
    message = response.json()["message"]
    for mention in case.mentions:
        assert mention.lower() in message.lower(), message
    assert await snapshot(client, scene, case.customer) == before


# --- what the same rules accept ------------------------------------------------------------------

# (JSON text of the amount, what a GET shows, micro-dollars stored)
GOOD_AMOUNTS = [
    ('"12.5"', "12.50", 12_500_000),
    ('"12"', "12.00", 12_000_000),
    ("12", "12.00", 12_000_000),
    ("84.34", "84.34", 84_340_000),
    ("0.123456", "0.123456", 123_456),
    ('"0.000001"', "0.000001", 1),
    ('"19.000001"', "19.000001", 19_000_001),
    ("1000000000", "1000000000.00", 1_000_000_000_000_000),
    ('"1000000000.000000"', "1000000000.00", 1_000_000_000_000_000),
    ("999999999.999999", "999999999.999999", 999_999_999_999_999),
    ("0", "0.00", 0),
    ('"0"', "0.00", 0),
    ("0.0", "0.00", 0),
    ("1E+2", "100.00", 100_000_000),
]


@pytest.mark.parametrize("field_name", [MONTHLY, STABLE], ids=["monthly", "stable"])
@pytest.mark.parametrize(
    ("text", "shown", "micros"), GOOD_AMOUNTS, ids=[a[0] for a in GOOD_AMOUNTS]
)
async def test_good_amounts_are_stored_exactly(
    client: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    field_name: str,
    text: str,
    shown: str,
    micros: int,
) -> None:
    scene = await build_scene(world, engine, client)
    path = f"/users/{scene.user.id}/payment/balance"
    headers = {**scene.staff.headers, **JSON}
    put = await client.put(path, content=raw((field_name, text)), headers=headers)
    assert put.status_code == 200, put.text
    got = await client.get(path, headers=scene.staff.headers)
    assert got.json() == put.json()
    assert got.json()[field_name] == shown
    credits_field = field_name.removesuffix("_monetary_value")
    assert got.json()[credits_field] == micros // 500_000  # $0.50 a credit on free
    column = "monthly_micros" if field_name == MONTHLY else "stable_micros"
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(balances).where(balances.c.customer_id == scene.user.id)))
            .mappings()
            .one()
        )
    assert row[column] == micros


async def _ledger_count(engine: AsyncEngine, customer_id: str) -> list[str]:
    query = (
        select(ledger_entries.c.bucket)
        .where(ledger_entries.c.customer_id == customer_id)
        .order_by(ledger_entries.c.id)
    )
    async with engine.connect() as conn:
        return [bucket for (bucket,) in await conn.execute(query)]


async def test_null_means_unchanged(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)
    path = f"/users/{scene.user.id}/payment/balance"
    entries = await _ledger_count(engine, scene.user.id)

    put = await client.put(path, json={MONTHLY: None, STABLE: "5"}, headers=scene.staff.headers)
    assert put.status_code == 200, put.text
    assert (put.json()[MONTHLY], put.json()[STABLE]) == ("10.00", "5.00")
    assert await _ledger_count(engine, scene.user.id) == [*entries, "stable"]

    put = await client.put(path, json={MONTHLY: "3", STABLE: None}, headers=scene.staff.headers)
    assert (put.json()[MONTHLY], put.json()[STABLE]) == ("3.00", "5.00")
    assert await _ledger_count(engine, scene.user.id) == [*entries, "stable", "monthly"]


@pytest.mark.parametrize(
    "body", [{}, {MONTHLY: None, STABLE: None}, {STABLE: "7.25"}], ids=["empty", "nulls", "same"]
)
async def test_a_put_that_sets_nothing_new_changes_nothing(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, body: dict[str, Any]
) -> None:
    scene = await build_scene(world, engine, client)
    before = await snapshot(client, scene, "user")
    path = f"/users/{scene.user.id}/payment/balance"
    put = await client.put(path, json=body, headers=scene.staff.headers)
    assert put.status_code == 200, put.text
    assert put.json() == before.balance
    assert await snapshot(client, scene, "user") == before


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.zoo+json"],
    ids=["no content type (the SDK's way)", "json", "json with charset", "a +json type"],
)
async def test_json_bodies_are_read_with_or_without_a_json_content_type(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine, content_type: str | None
) -> None:
    scene = await build_scene(world, engine, client)
    headers = dict(scene.staff.headers)
    if content_type is not None:
        headers["content-type"] = content_type
    # What kittycad 1.2.0 sends: model_dump_json() of every field, unset ones as null.
    body = b'{"monthly_api_credits_remaining_monetary_value":null,'
    body += b'"stable_api_credits_remaining_monetary_value":19.000001}'
    request = client.build_request(
        "PUT", f"/users/{scene.user.id}/payment/balance", content=body, headers=headers
    )
    assert request.headers.get("content-type") == content_type
    put = await client.send(request)
    assert put.status_code == 200, put.text
    assert (put.json()[MONTHLY], put.json()[STABLE]) == ("10.00", "19.000001")


async def test_a_body_of_exactly_one_mebibyte_is_accepted(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)
    body = _padded(MIB)
    assert len(body) == MIB
    headers = {**scene.staff.headers, **JSON}
    put = await client.put(f"/users/{scene.user.id}/payment/balance", content=body, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()[STABLE] == "1.00"


async def test_ids_are_read_case_insensitively(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)
    for customer_id, path in (
        (scene.user.id, f"/users/{scene.user.id.upper()}/payment/balance"),
        (scene.user.id, f"/users/{scene.user.email.upper()}/payment/balance"),
        (scene.org.id, f"/orgs/{scene.org.id.upper()}/payment/balance"),
    ):
        got = await client.get(path, headers=scene.staff.headers)
        assert got.status_code == 200, got.text
        assert got.json()["map_id"] == customer_id
    put = await client.put(
        f"/users/{scene.user.email.upper()}/payment/subscriptions",
        json={"modeling_app": "pro"},
        headers=scene.staff.headers,
    )
    assert put.status_code == 200, put.text
    mine = await client.get("/user/payment/subscriptions", headers=scene.user.headers)
    assert mine.json()["modeling_app"]["name"] == "pro"


async def test_a_null_pay_annually_keeps_what_was_chosen(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)

    async def pay_annually() -> bool:
        async with engine.connect() as conn:
            query = select(subscriptions.c.pay_annually).where(
                subscriptions.c.customer_id == scene.user.id
            )
            return bool((await conn.execute(query)).scalar_one())

    path = "/user/payment/subscriptions"
    headers = scene.user.headers
    put = await client.put(
        path, json={"modeling_app": "pro", "pay_annually": True}, headers=headers
    )
    assert put.json()["modeling_app"]["name"] == "pro"
    assert await pay_annually() is True
    put = await client.put(
        path, json={"modeling_app": "pro", "pay_annually": None}, headers=headers
    )
    assert put.status_code == 200, put.text
    assert await pay_annually() is True


async def test_enterprise_prices_take_numbers_and_strings(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)
    path = f"/orgs/{scene.org.id}/enterprise/pricing"
    headers = {**scene.staff.headers, **JSON}
    for content, price in (
        (b'{"type": "flat", "interval": "month", "price": 1500.123456}', "1500.123456"),
        (b'{"type": "per_user", "interval": "year", "price": "0"}', "0.00"),
        (b'{"interval": "week", "price": 1000000000, "type": "flat"}', "1000000000.00"),
    ):
        put = await client.put(path, content=content, headers=headers)
        assert put.status_code == 200, put.text
        assert put.json()["modeling_app"]["price"]["price"] == price
        got = await client.get(f"/orgs/{scene.org.id}/payment/balance", headers=scene.staff.headers)
        assert got.json()["modeling_app_enterprise_price"]["price"] == price


async def test_member_pages_walk_with_good_limits_and_tokens(
    client: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    scene = await build_scene(world, engine, client)
    for _ in range(3):
        newcomer = await world.user()
        added = await client.post(
            "/org/members",
            json={"email": newcomer.email, "role": "member"},
            headers=scene.admin.headers,
        )
        assert added.status_code == 201, added.text
        path = f"/user/org-invitations/{added.json()['id']}/accept"
        accepted = await client.post(path, headers=newcomer.headers)
        assert accepted.status_code == 200, accepted.text
    everyone = await client.get(
        "/org/members", params={"limit": "1000"}, headers=scene.admin.headers
    )
    assert everyone.json()["next_page"] is None
    ids = [item["id"] for item in everyone.json()["items"]]
    assert len(ids) == 5

    for sort_by, expected in (
        ("created_at_ascending", ids),
        ("created_at_descending", ids[::-1]),
    ):
        walked: list[str] = []
        params = {"limit": "2", "sort_by": sort_by}
        while True:
            page = await client.get("/org/members", params=params, headers=scene.admin.headers)
            assert page.status_code == 200, page.text
            walked += [item["id"] for item in page.json()["items"]]
            if page.json()["next_page"] is None:
                break
            params["page_token"] = page.json()["next_page"]
        assert walked == expected
