"""The embedded processor's card-management page (Stripe's customer portal, in miniature).

Plain server-rendered HTML, no script: it lists the customer's cards, makes one the default,
removes one, and adds one by test token through the same confirm flow as Stripe.js's part.
`GET /processor/portal/{link}` opens it with the single-use link that
`/user/payment/method-portal-link` redirected to; the page's forms then carry the session's
own secret (valid 30 minutes), which also stands as their CSRF token. Not in the OpenAPI
document, as /docs is not: these are pages for a browser, not API operations.
"""

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from zoopay.processors.base import Card, ProcessorError
from zoopay.processors.embedded import TEST_CARDS, EmbeddedProcessor, PortalSession

router = APIRouter(include_in_schema=False)

ACTIONS_PATH = "/processor/portal/actions"
_HEADERS = {
    # The page holds a session secret: never cached, framed or leaked in a Referer.
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.4rem;text-align:left;"
    "border-bottom:1px solid #ddd}form{display:inline}.message{padding:.6rem;"
    "background:#eef}.error{background:#fee}"
)


def _processor(request: Request) -> EmbeddedProcessor | None:
    processor = request.app.state.processor
    return processor if isinstance(processor, EmbeddedProcessor) else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _form(session: PortalSession, action: str, label: str, **fields: str) -> str:
    hidden = {"session": session.secret, "action": action, **fields}
    inputs = "".join(
        f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'
        for name, value in hidden.items()
    )
    return (
        f'<form method=post action="{ACTIONS_PATH}">{inputs}'
        f"<button type=submit>{escape(label)}</button></form>"
    )


def _card_row(session: PortalSession, card: Card) -> str:
    actions = _form(session, "remove", "Remove", payment_method=card.id)
    if not card.is_default:
        actions = _form(session, "default", "Make default", payment_method=card.id) + actions
    default = "default" if card.is_default else ""
    return (
        f"<tr><td>{escape(card.brand)}</td><td>•••• {escape(card.last4)}</td>"
        f"<td>{card.exp_month:02d}/{card.exp_year}</td><td>{default}</td><td>{actions}</td></tr>"
    )


async def _cards_page(
    processor: EmbeddedProcessor,
    session: PortalSession,
    message: str = "",
    *,
    status: int = 200,
) -> HTMLResponse:
    cards = await processor.list_payment_methods(session.customer_id)
    rows = "".join(_card_row(session, card) for card in cards)
    table = (
        "<table><tr><th>Brand</th><th>Card</th><th>Expires</th><th></th><th></th></tr>"
        f"{rows}</table>"
        if cards
        else "<p>No card yet.</p>"
    )
    options = "".join(
        f'<option value="{escape(token)}">{escape(token)}</option>' for token in TEST_CARDS
    )
    add = (
        f'<h2>Add a card</h2><form method=post action="{ACTIONS_PATH}">'
        f'<input type=hidden name=session value="{escape(session.secret)}">'
        "<input type=hidden name=action value=add>"
        f"<label>Test card <select name=payment_method>{options}</select></label> "
        "<button type=submit>Add</button></form>"
    )
    notice = ""
    if message:
        kind = "message" if status < 400 else "message error"
        notice = f'<p class="{kind}" role=status>{escape(message)}</p>'
    back = f'<p><a href="{escape(session.return_url)}">Back</a></p>' if session.return_url else ""
    return _page("Your cards", notice + table + add + back, status)


def _gone(message: str, status: int) -> HTMLResponse:
    return _page("This page has expired", f"<p>{escape(message)}</p>", status)


@router.get("/processor/portal/{link}")
async def open_card_portal(link: str, request: Request) -> HTMLResponse:
    processor = _processor(request)
    if processor is None:
        return _gone("This server's processor has no such page.", 404)
    try:
        session = await processor.open_portal(link)
    except ProcessorError as error:
        return _gone(error.message, 404)
    return await _cards_page(processor, session)


_ACTIONS = {"add", "default", "remove"}


@router.post(ACTIONS_PATH)
async def card_portal_action(request: Request) -> HTMLResponse:
    processor = _processor(request)
    if processor is None:
        return _gone("This server's processor has no such page.", 404)
    try:
        form = parse_qs((await request.body()).decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _gone("The form could not be read.", 400)
    field = {name: values[0] for name, values in form.items() if values}
    try:
        session = await processor.portal_session(field.get("session", ""))
    except ProcessorError as error:
        return _gone(error.message, 403)
    action, method = field.get("action", ""), field.get("payment_method", "")
    if action not in _ACTIONS or not method:
        return await _cards_page(processor, session, "Choose a card and an action.", status=400)
    try:
        if action == "add":
            card = await processor.attach_test_card(session.customer_id, method)
            message = f"Added {card.brand} ending in {card.last4}."
        elif action == "default":
            await processor.set_default_payment_method(session.customer_id, method)
            message = "Default card changed."
        else:
            await processor.detach_payment_method(session.customer_id, method)
            message = "Card removed."
    except ProcessorError as error:
        status = {"card_declined": 402, "resource_missing": 404}.get(error.code, 400)
        return await _cards_page(processor, session, error.message, status=status)
    return await _cards_page(processor, session, message)
