"""The `zoopay` command: serve, migrate, and manage users, orgs and tokens."""

import asyncio
import gc
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zoopay.accounts import service as accounts
from zoopay.billing import run as billing
from zoopay.catalog.service import Catalog, CatalogError, load_catalog
from zoopay.config import HttpServer, ProcessorKind, Settings, get_settings
from zoopay.db import migrate
from zoopay.db.engine import Timeouts, create_engine, transaction
from zoopay.errors import BadRequest, ZoopayError
from zoopay.instants import InstantOutOfRange, check_instant
from zoopay.journal import service as journal
from zoopay.processors import processor_from_settings
from zoopay.subscriptions import service as subscriptions

app = typer.Typer(no_args_is_help=True, help="zoopay: payments and API credits.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
users_app = typer.Typer(no_args_is_help=True, help="Users.")
orgs_app = typer.Typer(no_args_is_help=True, help="Organizations.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens.")
billing_app = typer.Typer(no_args_is_help=True, help="Billing jobs.")
console_app = typer.Typer(no_args_is_help=True, help="The web console.")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(orgs_app, name="orgs")
app.add_typer(tokens_app, name="tokens")
app.add_typer(billing_app, name="billing")
app.add_typer(console_app, name="console")
ledger_app = typer.Typer(no_args_is_help=True, help="The books.")
app.add_typer(ledger_app, name="ledger")

T = TypeVar("T")
# Customers refreshed per transaction by `billing refresh`.
REFRESH_CHUNK = 1000
COMMAND_TIMEOUTS = Timeouts(connect=30, statement=30, pool=30, sqlite_lock=30)


def _settings() -> Settings:
    """The ZOOPAY_* settings; a wrong one exits 2 naming the variable and what it must be, never
    its value (it may be a secret), nor a traceback."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = f"ZOOPAY_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
            typer.echo(f"error: {where}{error['msg']}", err=True)
        raise typer.Exit(2) from None


def _catalog() -> Catalog:
    try:
        return load_catalog(_settings().catalog)
    except CatalogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _run(work: Callable[[AsyncConnection, datetime], Awaitable[T]]) -> T:
    """Run one unit of work in a transaction; domain errors exit 1 with their message."""

    async def in_transaction(engine: AsyncEngine, now: datetime) -> T:
        async with transaction(engine) as conn:
            return await work(conn, now)

    return _run_with_engine(in_transaction)


def _collect_as_a_batch() -> None:
    """For a command that builds and drops rows by the hundred thousand (billing run and
    refresh), nearly all freed by reference counting: the cycle collector, by default run
    every 700 allocations, would walk the chunk's live rows again and again, about a tenth of
    a billing run (bench/billing.py). What start-up made is frozen out of its sight, and it
    runs less often; it still runs, so cycles are still freed."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _run_with_engine(work: Callable[[AsyncEngine, datetime], Awaitable[T]]) -> T:
    async def main() -> T:
        # An operator's command may wait for a busy database longer than a request should.
        engine = create_engine(_settings().database_url, timeouts=COMMAND_TIMEOUTS)
        try:
            return await work(engine, datetime.now(UTC))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ZoopayError as exc:
        typer.echo(json.dumps({"error_code": exc.error_code, "message": exc.message}), err=True)
        raise typer.Exit(1) from None


def _print(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest schema."""
    migrate.upgrade(_settings().database_url)
    _print({"upgraded": True})


@users_app.command("create")
def users_create(
    email: str,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    staff: Annotated[bool, typer.Option("--staff", help="May use the staff endpoints")] = False,
) -> None:
    """Create a user on the free plan and print a new API token for them."""
    catalog = _catalog()

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        user = await accounts.create_user(
            conn, catalog=catalog, email=email, now=now, name=name, is_staff=staff
        )
        token = await accounts.create_token(conn, user=user, now=now)
        return {"id": user.id, "email": user.email, "token": token}

    _print(_run(work))


@users_app.command("delete")
def users_delete(email: Annotated[str, typer.Argument(help="Email address or user id")]) -> None:
    """Delete a user: their tokens stop working on every server within a second; their ledger,
    calls and balance stay for the audit trail."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        user = await accounts.find_user(conn, id_or_email=email)
        deleted = await accounts.delete_user(conn, user=user, now=now)
        return {"id": deleted.id, "email": deleted.email, "deleted_at": _iso(deleted.deleted_at)}

    _print(_run(work))


@users_app.command("set-staff")
def users_set_staff(
    email: Annotated[str, typer.Argument(help="Email address or user id")],
    staff: Annotated[bool, typer.Option("--staff/--no-staff", help="Staff or not")],
) -> None:
    """Make a user staff, or not; every server applies it within a second."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        user = await accounts.set_staff(
            conn, user=await accounts.find_user(conn, id_or_email=email), is_staff=staff, now=now
        )
        return {"id": user.id, "email": user.email, "is_staff": user.is_staff}

    _print(_run(work))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (a UUID), not the token")],
) -> None:
    """Revoke any token, a user's, an org's or a service's: every server refuses it within a
    second. Again is no error."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        token = await accounts.revoke_token(conn, token_id=token_id, now=now)
        return {"id": token.id, "revoked_at": _iso(token.revoked_at)}

    _print(_run(work))


@tokens_app.command("create")
def tokens_create(
    email: Annotated[str | None, typer.Argument(help="The user the token is for")] = None,
    service: Annotated[
        str | None, typer.Option(help="Instead: a token for a service that reports usage")
    ] = None,
) -> None:
    """Print a new API token and its id (what `tokens revoke` takes) for an existing user, or
    for a service (--service NAME)."""
    if (email is None) == (service is None):
        typer.echo("error: give either EMAIL or --service NAME", err=True)
        raise typer.Exit(2)

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        if service is not None:
            owner = accounts.TokenOwner.SERVICE
            record, token = await accounts.create_owned_token(
                conn, owner=owner, owner_id=service, label=None, now=now
            )
        else:
            user = await accounts.find_user(conn, id_or_email=str(email))
            record, token = await accounts.create_user_token(conn, user=user, label=None, now=now)
        return {"id": record.id, "token": token}

    _print(_run(work))


@console_app.command("link")
def console_link(email: Annotated[str, typer.Argument(help="The user to sign in")]) -> None:
    """Print a single-use sign-in link to the console for a user (valid 15 minutes)."""
    from zoopay.console.routes import link_url
    from zoopay.console.service import create_link

    settings = _settings()
    base = settings.public_url or f"http://{settings.host}:{settings.port}"

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        user = await accounts.find_user(conn, id_or_email=email)
        link = await create_link(conn, user=user, created_by="operator", now=now)
        return {"url": link_url(base.rstrip("/") + "/console/", link.secret)}

    _print(_run(work))


# --at of the billing commands: the moment to bill or refresh as of.
BillingMoment = Annotated[
    datetime | None,
    typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"], help="Default: now"),
]


@billing_app.command("refresh")
def billing_refresh(at: BillingMoment = None) -> None:
    """Reset every monthly bucket whose period has turned to its plan's grant, once."""
    catalog = _catalog()

    async def refresh_all(engine: AsyncEngine, now: datetime) -> int:
        moment = _refresh_moment(at, now)
        async with transaction(engine) as conn:
            customers = await subscriptions.customers_due_for_refresh(conn, now=moment)
        refreshed = 0
        # Set-based, a chunk per transaction: short locks, and a crash loses at most the chunk
        # under way (a rerun refreshes whatever is still due, nothing twice).
        for first in range(0, len(customers), REFRESH_CHUNK):
            chunk = customers[first : first + REFRESH_CHUNK]
            async with transaction(engine) as conn:
                refreshed += await subscriptions.refresh_many(
                    conn, catalog=catalog, customers=chunk, now=moment
                )
        return refreshed

    _collect_as_a_batch()
    refreshed = _run_with_engine(refresh_all)
    _print({"refreshed": refreshed})


# Why a future --at is refused unless asked for, and only on the embedded processor.
REHEARSAL_WARNING = (
    "warning: --allow-future: billing as of {at}, which has not come yet. This is a rehearsal"
    " for a test install: periods that have not ended are closed and invoiced now, and their"
    " charges are made on the embedded processor (no real money). Never do it on a database"
    " whose customers are real."
)


@billing_app.command("run")
def billing_run(
    at: BillingMoment = None,
    allow_future: Annotated[
        bool,
        typer.Option(
            "--allow-future",
            help="Test installs only, embedded processor only: let --at be in the future, to"
            " rehearse a period close (see the README's Walkthrough)",
        ),
    ] = False,
) -> None:
    """Close every billing period that has ended: one invoice per customer with the next
    period's fee and the usage due, charged; retry failed charges on the dunning schedule.
    Idempotent: a second run (or a rerun after a crash) bills nobody twice."""
    catalog = _catalog()

    settings = _settings()
    terms = billing.BillingTerms(
        dunning_days=settings.dunning_days,
        tax_rates=settings.tax_rates,
        invoice_prefix=settings.invoice_prefix,
    )

    async def run(engine: AsyncEngine, now: datetime) -> dict[str, int]:
        if allow_future and settings.processor != ProcessorKind.EMBEDDED:
            raise BadRequest(
                "--allow-future rehearses on the embedded processor only: on"
                f" {settings.processor.value} it would charge real cards for periods that have"
                " not begun"
            )
        moment = _refresh_moment(at, now, allow_future=allow_future)
        if moment > now:
            typer.echo(REHEARSAL_WARNING.format(at=moment.isoformat()), err=True)
        processor = processor_from_settings(settings, engine=engine, clock=lambda: moment)
        summary = await billing.run_billing(engine, catalog, processor, terms, at=moment)
        return summary.as_json()

    _collect_as_a_batch()
    _print(_run_with_engine(run))


def _refresh_moment(at: datetime | None, now: datetime, *, allow_future: bool = False) -> datetime:
    """--at may catch up on a past moment, never start a period that has not begun (unless a
    rehearsal says --allow-future); without an offset, it is UTC."""
    if at is None:
        return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at > now and not allow_future:
        raise BadRequest(
            f"--at {at.isoformat()} is in the future; it must not be after now (a test install"
            " may rehearse a period close with --allow-future)"
        )
    try:
        return check_instant(at)
    except InstantOutOfRange as exc:
        raise BadRequest(f"--at {exc}") from None


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check the books: every journal account equals its lines, every posting and the trial
    balance sum to zero, every balance bucket equals its ledger entries. Prints
    {"ok", "problems"}; exits 1 when anything is off."""

    async def check(conn: AsyncConnection, _now: datetime) -> list[str]:
        return await journal.verify(conn)

    problems = _run(check)
    _print({"ok": not problems, "problems": problems})
    if problems:
        raise typer.Exit(1)


@orgs_app.command("create")
def orgs_create(
    name: str, admin: Annotated[str, typer.Option("--admin", help="Email of its first admin")]
) -> None:
    """Create an org with an existing user as its admin."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        user = await accounts.find_user(conn, id_or_email=admin)
        org = await accounts.create_org(
            conn, admin=user, details=accounts.OrgDetails(name=name), now=now
        )
        return {"id": org.id, "name": org.name}

    _print(_run(work))


@orgs_app.command("add-member")
def orgs_add_member(
    org_id: str,
    email: str,
    role: Annotated[
        accounts.OrgRole, typer.Option(help="admin or member")
    ] = accounts.OrgRole.MEMBER,
) -> None:
    """Add an existing user to an org."""

    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        org = await accounts.find_org(conn, org_id=org_id)
        user = await accounts.find_user(conn, id_or_email=email)
        await accounts.add_member(conn, org_id=org.id, user=user, role=role, now=now)
        return {"org_id": org.id, "user_id": user.id, "role": role.value}

    _print(_run(work))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: ZOOPAY_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: ZOOPAY_PORT")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes; default: ZOOPAY_WORKERS")] = None,
    server: Annotated[
        HttpServer | None, typer.Option(help="HTTP server; default: ZOOPAY_SERVER")
    ] = None,
) -> None:
    """Serve the API; on the first start, create a staff user and print its token once."""
    settings = _settings()
    _bootstrap_staff(_catalog(), settings.bootstrap_staff_email)
    address, number = host or settings.host, port or settings.port
    processes = workers or settings.workers
    if (server or settings.server) == HttpServer.GRANIAN:
        _serve_with_granian(address, number, processes, settings.log_level, settings.access_log)
        return
    import uvicorn

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=address,
        port=number,
        workers=processes,
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=False,
    )


APP_FACTORY = "zoopay.app:app_from_environment"


def _serve_with_granian(host: str, port: int, workers: int, log_level: str, access: bool) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        APP_FACTORY,
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        log_level=LogLevels(log_level),
        log_access=access,
    ).serve()


def _bootstrap_staff(catalog: Catalog, email: str) -> None:
    async def work(conn: AsyncConnection, now: datetime) -> dict[str, Any] | None:
        if await accounts.any_staff(conn):
            return None
        user = await accounts.create_user(
            conn, catalog=catalog, email=email, now=now, name="Staff", is_staff=True
        )
        return {
            "id": user.id,
            "email": user.email,
            "token": await accounts.create_token(conn, user=user, now=now),
        }

    created = _run(work)
    if created is not None:
        print(
            "First start: created staff user "
            f"{created['email']}. Its API token, shown only this once:\n  {created['token']}",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    app()
