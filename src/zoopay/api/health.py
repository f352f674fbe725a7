"""Probes for an orchestrator: is the process alive, and can it serve (its database answers)?
Neither needs a token."""

import logging
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.api.deps import get_engine
from zoopay.api.openapi import errors
from zoopay.api.routing import json_router
from zoopay.db.engine import reading
from zoopay.errors import ServiceUnavailable

log = logging.getLogger("zoopay")

router = json_router(tags=["meta"])


class Health(BaseModel):
    status: Literal["alive", "ready"]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Is the process alive? Touches no database. No token needed."""
    return Health(status="alive")


@router.get("/readyz", response_model=Health, responses=errors(503))
async def readyz(engine: Annotated[AsyncEngine, Depends(get_engine)]) -> Health:
    """Can this server serve: does its database answer a query within the timeout? 503 if
    not. No token needed."""
    try:
        async with reading(engine) as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("not ready: %r", exc)
        raise ServiceUnavailable("the database did not answer") from None
    return Health(status="ready")
