"""What every console page shares: templates, the session cookie, CSRF, forms, time zones,
money, and the route class that turns a domain error into a page instead of JSON."""

import logging
import re
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.api.errors import describe_validation
from zoopay.catalog.schemas import ModelingAppSubscriptionTier
from zoopay.console.service import ConsoleSession, csrf_matches, find_session
from zoopay.db.engine import reading
from zoopay.errors import BadRequest, Forbidden, UnsupportedMediaType, ZoopayError
from zoopay.money import format_dollars, format_micros

SESSION_COOKIE = "zoopay_console"
ZONE_COOKIE = "zoopay_tz"
CURRENCY = "USD"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20

# Pages load nothing but their own stylesheet and script; no page may frame them; forms post
# only here; the sign-in link in a URL never leaks to another site through a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def money(micros: int) -> str:
    """An amount as the API writes it, with its currency: `19.00 USD`."""
    return f"{format_micros(micros)} {CURRENCY}"


def dollars(amount: Decimal | None) -> str:
    return "—" if amount is None else f"{format_dollars(amount)} {CURRENCY}"


_templates = Environment(
    loader=PackageLoader("zoopay.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["money"] = money
_templates.filters["dollars"] = dollars
# A plan as the API shows it (the same wire model the catalog endpoints answer).
_templates.filters["tier"] = ModelingAppSubscriptionTier.of


def static_file(name: str) -> bytes:
    return files("zoopay.console").joinpath("static", name).read_bytes()


_LINK_SECRET = re.compile(r"(secret=)[^&\s]+")


class RedactLinkSecrets(logging.Filter):
    """Access logs show a sign-in link's path without its secret (an unspent link in a log
    would sign anyone who reads the log in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _LINK_SECRET.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactLinkSecrets) for f in access.filters):
        access.addFilter(RedactLinkSecrets())


class SignInRequired(Exception):
    """No live session: the page answers with the way in."""


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page, and in which time zone."""

    session: ConsoleSession | None
    zone: ZoneInfo

    @property
    def zone_name(self) -> str:
        return str(self.zone.key)

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")


def viewer_zone(request: Request) -> ZoneInfo:
    """The zone the viewer's browser named in a cookie (console.js sets it); UTC without one."""
    name = urllib.parse.unquote(request.cookies.get(ZONE_COOKIE, ""))
    if name and len(name) <= 64 and ".." not in name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


async def viewer(request: Request, *, required: bool = True) -> Viewer:
    """The page's viewer, from the session cookie; SignInRequired without a live session."""
    secret = request.cookies.get(SESSION_COOKIE, "")
    session = None
    if secret:
        engine: AsyncEngine = request.app.state.engine
        async with reading(engine) as conn:
            session = await find_session(conn, secret=secret, now=request.app.state.clock())
    if session is None and required:
        raise SignInRequired()
    return Viewer(session, viewer_zone(request))


def _public_origin(request: Request) -> str | None:
    """ZOOPAY_PUBLIC_URL's scheme://host[:port]: where browsers reach the console. `zoopay serve`
    speaks plain HTTP and reads no proxy headers, so behind a TLS proxy the request's own
    scheme is http while the browser's is https."""
    public: str | None = request.app.state.public_url
    if not public:
        return None
    parts = urllib.parse.urlsplit(public)
    return f"{parts.scheme}://{parts.netloc}"


def _same_site(request: Request) -> bool:
    """A form sent from a page of another site is refused before anything else is read (the
    CSRF token is the real guard; this is the browser's own word on where a form came from)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin in (own, _public_origin(request))


async def read_form(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded), each at most once."""
    if not _same_site(request):
        raise Forbidden("this form was sent from another site")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("the console takes forms (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode(),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form could not be read") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadRequest(f"the form sent {name} twice")
        if "\x00" in value:
            raise BadRequest(f"{name} must not contain NUL characters")
        form[name] = value
    return form


async def checked_form(request: Request, who: Viewer) -> dict[str, str]:
    """A form of a signed-in page: its CSRF token must be the session's."""
    form = await read_form(request)
    secret = request.cookies.get(SESSION_COOKIE, "")
    if who.session is None or not csrf_matches(secret, form.get("csrf", "")):
        raise Forbidden("this form is stale or was not sent from the console: reload the page")
    return form


def render(
    request: Request, who: Viewer, template: str, status: int = 200, **context: Any
) -> Response:
    page = _templates.get_template(template).render(
        who=who,
        user=who.session.user if who.session else None,
        csrf=who.session.csrf_token if who.session else "",
        path=request.url.path,
        reloadable=request.method == "GET" and status == 200,
        **context,
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def redirect(to: str) -> Response:
    """After a form: see the result (303, so a reload does not send the form again)."""
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


def _over_tls(request: Request) -> bool:
    """Whether the browser reaches the console over TLS: this request's scheme, or the public
    URL's (a TLS proxy in front of `zoopay serve`)."""
    public = _public_origin(request)
    return request.url.scheme == "https" or (public is not None and public.startswith("https:"))


def set_session_cookie(request: Request, response: Response, secret: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path="/console",
        httponly=True,
        secure=_over_tls(request),
        samesite="lax",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/console",
        httponly=True,
        secure=_over_tls(request),
        samesite="lax",
    )


class ConsoleRoute(APIRoute):
    """A console page: a domain error is a page that says what went wrong, with its status;
    no session, the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as invalid:
                who = await viewer(request, required=False)
                error = BadRequest(describe_validation(invalid.errors()))
                return render(request, who, "error.html", status=400, error=error)
            except SignInRequired:
                who = Viewer(None, viewer_zone(request))
                return render(request, who, "sign_in.html", status=401, next=request.url.path)
            except ZoopayError as error:
                try:
                    who = await viewer(request, required=False)
                except ZoopayError:
                    who = Viewer(None, viewer_zone(request))
                response = render(request, who, "error.html", status=error.status_code, error=error)
                response.headers.update(error.headers)
                return response

        return page_handler


def now_of(request: Request) -> datetime:
    moment: datetime = request.app.state.clock()
    return moment.astimezone(UTC)
