"""Links to an invoice's PDF and page that work in a browser, which sends no bearer token:
signed (HMAC-SHA256 with a key kept in the database, shared by every server process) and
expiring. The API's invoice answers carry fresh ones."""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from zoopay.db.tables import server_secrets
from zoopay.errors import Forbidden

LINK_LIFETIME = timedelta(days=7)
_SECRET_NAME = "invoice_links"


async def link_key(conn: AsyncConnection, *, now: datetime) -> bytes:
    """The signing key, made on first use (a concurrent first use keeps whichever landed)."""
    query = select(server_secrets.c.value).where(server_secrets.c.name == _SECRET_NAME)
    value = (await conn.execute(query)).scalar_one_or_none()
    if value is None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(server_secrets)
            .values(name=_SECRET_NAME, value=secrets.token_hex(32), created_at=now)
            .on_conflict_do_nothing()
        )
        value = (await conn.execute(query)).scalar_one()
    return bytes.fromhex(value)


def _signature(key: bytes, invoice_id: str, kind: str, expires: int) -> str:
    message = f"{invoice_id}:{kind}:{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_path(key: bytes, invoice_id: str, kind: str, *, now: datetime) -> str:
    """`/invoices/{id}/{kind}?expires=...&signature=...`, valid for LINK_LIFETIME."""
    expires = int((now + LINK_LIFETIME).timestamp())
    signature = _signature(key, invoice_id, kind, expires)
    return f"/invoices/{invoice_id}/{kind}?expires={expires}&signature={signature}"


def check_signature(
    key: bytes, invoice_id: str, kind: str, *, expires: int, signature: str, now: datetime
) -> None:
    expected = _signature(key, invoice_id, kind, expires)
    if not hmac.compare_digest(expected, signature):
        raise Forbidden("this invoice link is not valid: open the invoice again for a new one")
    if expires <= now.timestamp():
        raise Forbidden("this invoice link has expired: open the invoice again for a new one")
