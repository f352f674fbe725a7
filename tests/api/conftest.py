"""Customers here have a card on file: their upgrades are paid (tests/support/billing.py)."""

from tests.support.billing import cards_on_file

__all__ = ["cards_on_file"]
