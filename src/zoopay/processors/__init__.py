"""Payment processors: where money is actually taken (embedded, or Stripe).

`processor_from_settings` is the one place a processor is chosen (`ZOOPAY_PROCESSOR`); the app
keeps it in `app.state.processor`, and domain code reaches it only through the
`PaymentProcessor` protocol of zoopay.processors.base.
"""

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.config import ProcessorKind, Settings
from zoopay.processors.base import PaymentProcessor
from zoopay.processors.embedded import EmbeddedProcessor


def processor_from_settings(
    settings: Settings, *, engine: AsyncEngine, clock: Callable[[], datetime]
) -> PaymentProcessor:
    """The processor `ZOOPAY_PROCESSOR` names. `clock` is read on every call (tests move it).

    A new processor adds its member to config.ProcessorKind and its branch here."""
    if settings.processor == ProcessorKind.EMBEDDED:
        return EmbeddedProcessor(engine, clock)
    raise ValueError(f"unknown processor {settings.processor!r}")  # pragma: no cover


__all__ = ["EmbeddedProcessor", "PaymentProcessor", "processor_from_settings"]
