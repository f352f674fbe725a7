"""Amounts of US dollars: `Decimal` on the wire, integer micro-dollars in storage.

A float never becomes an amount: request bodies are parsed with `parse_float=Decimal`, so
amounts arrive as `Decimal`, `int` or decimal strings, and they leave as decimal strings.
"""

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from zoopay.errors import quoted

MICROS_PER_DOLLAR = 1_000_000
MAX_DOLLARS = Decimal(1_000_000_000)
# The most a balance bucket or a ledger amount can hold: its BIGINT column's largest value.
MAX_BALANCE_MICROS = 2**63 - 1
# The most one reported API call may cost.
MAX_CALL_PRICE_MICROS = 10_000 * MICROS_PER_DOLLAR
ONE_MICRO = Decimal("0.000001")


# Plain ASCII digits with an optional fraction: no sign, exponent, spaces or underscores.
_DECIMAL_STRING = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


class InvalidAmount(ValueError):
    """An amount that is not a finite, non-negative dollar value with at most 6 decimals."""


def parse_dollars(value: object) -> Decimal:
    """Validate a wire amount, refusing anything that would need rounding."""
    if isinstance(value, bool | float):
        raise InvalidAmount("an amount must be a JSON number or a decimal string")
    if isinstance(value, int | Decimal):
        dollars = Decimal(value)
    elif isinstance(value, str):
        if value.startswith("-") and _DECIMAL_STRING.fullmatch(value[1:]):
            raise InvalidAmount("an amount must not be negative")
        if not _DECIMAL_STRING.fullmatch(value):
            raise InvalidAmount(f'{quoted(value)} is not a decimal amount like "19.00"')
        dollars = Decimal(value)
    else:
        raise InvalidAmount("an amount must be a JSON number or a decimal string")
    if not dollars.is_finite():
        raise InvalidAmount("an amount must be finite")
    if dollars < 0:
        raise InvalidAmount("an amount must not be negative")
    if dollars > MAX_DOLLARS:
        raise InvalidAmount(f"an amount must not exceed {MAX_DOLLARS} USD")
    if dollars != dollars.quantize(ONE_MICRO):
        raise InvalidAmount("an amount has at most 6 decimal places")
    return dollars.quantize(ONE_MICRO)


def to_micros(dollars: Decimal) -> int:
    micros = dollars.scaleb(6)
    if micros != micros.to_integral_value():
        raise InvalidAmount("an amount has at most 6 decimal places")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def format_micros(micros: int) -> str:
    """`19000000` -> `"19.00"`, `4200` -> `"0.0042"`: at least two decimals, at most six."""
    sign = "-" if micros < 0 else ""
    dollars, fraction = divmod(abs(micros), MICROS_PER_DOLLAR)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{dollars}.{digits}"


def format_dollars(dollars: Decimal) -> str:
    return format_micros(to_micros(dollars))


def credits_for(value_micros: int, credit_price_micros: int) -> int:
    """Whole credits a bucket buys: floor(value / price), 0 when credits are unpriced."""
    if credit_price_micros <= 0 or value_micros <= 0:
        return 0
    return value_micros // credit_price_micros


_SERIALIZE = PlainSerializer(format_dollars, return_type=str, when_used="json")

# What the OpenAPI document says, exactly as the code above decides it.
_SENT = {
    "type": "string",
    "pattern": r"^-?[0-9]+\.[0-9]{2,6}$",
    "description": 'USD as a decimal string with 2 to 6 decimals, e.g. "19.00"',
}
# `parse_dollars` as patterns: digits with an optional fraction whose 7th decimal on are zeros,
# at most 1,000,000,000.
_ACCEPTED_STRING = {
    "type": "string",
    "pattern": r"^0*([0-9]{1,9}(\.[0-9]{1,6}0*)?|1000000000(\.0+)?)$",
}
_ACCEPTED_NUMBER = {
    "type": "number",
    "minimum": 0,
    "maximum": int(MAX_DOLLARS),
    "multipleOf": float(ONE_MICRO),
}
_ACCEPTED = {
    "anyOf": [_ACCEPTED_NUMBER, _ACCEPTED_STRING],
    "description": "USD: a JSON number or a decimal string, at most 6 decimals, at most 1e9",
}

# An amount someone gives us: a JSON number or decimal string, checked by `parse_dollars`.
Amount = Annotated[
    Decimal,
    BeforeValidator(parse_dollars),
    _SERIALIZE,
    WithJsonSchema(_ACCEPTED, mode="validation"),
    WithJsonSchema(_SENT, mode="serialization"),
]

# An amount we report (a balance, a total): exact, sent as a decimal string.
Money = Annotated[Decimal, _SERIALIZE, WithJsonSchema(_SENT)]
