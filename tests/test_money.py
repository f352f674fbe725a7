"""Amounts: parsing wire values, micro-dollar conversion, formatting and credits."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoopay.money import (
    MAX_DOLLARS,
    InvalidAmount,
    credits_for,
    format_dollars,
    format_micros,
    from_micros,
    parse_dollars,
    to_micros,
)

MAX_MICROS = 1_000_000_000 * 1_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, Decimal("0")),
        ("0", Decimal("0")),
        ("0.00", Decimal("0")),
        (19, Decimal("19")),
        ("19", Decimal("19")),
        (Decimal("84.34"), Decimal("84.34")),
        ("84.34", Decimal("84.34")),
        ("19.000001", Decimal("19.000001")),
        (Decimal("0.000001"), Decimal("0.000001")),
        ("0.0000010", Decimal("0.000001")),
        (Decimal("1e3"), Decimal("1000")),
        ("1000000000", MAX_DOLLARS),
        (1_000_000_000, MAX_DOLLARS),
        ("999999999.999999", Decimal("999999999.999999")),
    ],
)
def test_parse_dollars_accepts(value: object, expected: Decimal) -> None:
    parsed = parse_dollars(value)
    assert parsed == expected
    # Always quantized to exactly six places, so it converts to micros without loss.
    assert parsed.as_tuple().exponent == -6
    assert to_micros(parsed) == int(expected * 1_000_000)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        1.5,
        0.0,
        None,
        [],
        {},
        "",
        "   ",
        "abc",
        "1,000",
        "$5",
        "NaN",
        "nan",
        "sNaN",
        Decimal("NaN"),
        "Infinity",
        "-Infinity",
        "inf",
        Decimal("Infinity"),
        -1,
        "-1",
        "-0.000001",
        Decimal("-0.01"),
        "1000000000.000001",
        1_000_000_001,
        "1E+10",
        "1E+1000",
        "0.0000001",
        "1.0000005",
        Decimal("1e-7"),
        "19.0000001",
        # A decimal string is plain ASCII digits with an optional fraction, nothing else.
        "1E+3",
        " 5.5 ",
        "-0",
        "+5",
        "1_000",
        "\u0661\u0662",
        "5.",
        ".5",
    ],
)
def test_parse_dollars_rejects(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_dollars(value)


def test_invalid_amount_is_a_value_error() -> None:
    # Pydantic turns a ValueError raised by a validator into a 400, not a 500.
    assert issubclass(InvalidAmount, ValueError)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.00"),
        (1, "0.000001"),
        (10, "0.00001"),
        (4_200, "0.0042"),
        (100_000, "0.10"),
        (500_000, "0.50"),
        (1_000_000, "1.00"),
        (19_000_000, "19.00"),
        (19_000_001, "19.000001"),
        (84_340_000, "84.34"),
        (123_456_789, "123.456789"),
        (MAX_MICROS, "1000000000.00"),
        (-1, "-0.000001"),
        (-19_500_000, "-19.50"),
    ],
)
def test_format_micros(micros: int, text: str) -> None:
    assert format_micros(micros) == text


def test_format_dollars() -> None:
    assert format_dollars(Decimal("19")) == "19.00"
    assert format_dollars(Decimal("0.0042")) == "0.0042"
    assert format_dollars(Decimal("19.000001")) == "19.000001"
    with pytest.raises(InvalidAmount):
        format_dollars(Decimal("0.0000001"))


def test_to_and_from_micros() -> None:
    assert to_micros(Decimal("19.000001")) == 19_000_001
    assert to_micros(Decimal("0")) == 0
    assert to_micros(Decimal("1E+9")) == MAX_MICROS
    assert from_micros(19_000_001) == Decimal("19.000001")
    assert from_micros(0) == 0
    with pytest.raises(InvalidAmount):
        to_micros(Decimal("1.0000001"))


@pytest.mark.parametrize(
    ("value", "price", "credits"),
    [
        (10_000_000, 500_000, 20),
        (100_000_000, 500_000, 200),
        (499_999, 500_000, 0),
        (500_000, 500_000, 1),
        (999_999, 500_000, 1),
        (1_000_000, 500_000, 2),
        (0, 500_000, 0),
        (-1_000_000, 500_000, 0),
        (10_000_000, 0, 0),
        (10_000_000, -500_000, 0),
        (MAX_MICROS, 500_000, 2_000_000_000),
        (MAX_MICROS, 1, MAX_MICROS),
    ],
)
def test_credits_for(value: int, price: int, credits: int) -> None:
    assert credits_for(value, price) == credits


micros = st.integers(min_value=0, max_value=MAX_MICROS)
amounts = st.decimals(
    min_value=0, max_value=MAX_DOLLARS, places=6, allow_nan=False, allow_infinity=False
)


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_micros_round_trip(value: int) -> None:
    assert to_micros(from_micros(value)) == value


@given(micros)
def test_formatted_amounts_parse_back_exactly(value: int) -> None:
    text = format_micros(value)
    whole, fraction = text.split(".")
    assert 2 <= len(fraction) <= 6
    assert len(fraction) == 2 or not fraction.endswith("0")
    assert whole == str(value // 1_000_000)
    assert Decimal(text) == from_micros(value)
    assert to_micros(parse_dollars(text)) == value


@given(amounts, st.booleans())
def test_parsed_amounts_round_trip(amount: Decimal, as_string: bool) -> None:
    parsed = parse_dollars(str(amount) if as_string else amount)
    assert parsed == amount
    assert from_micros(to_micros(parsed)) == amount
    assert Decimal(format_dollars(parsed)) == amount


@given(micros, st.integers(min_value=1, max_value=10**9))
def test_credits_are_the_whole_credits_a_value_buys(value: int, price: int) -> None:
    credits = credits_for(value, price)
    assert credits * price <= value < (credits + 1) * price
