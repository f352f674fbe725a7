"""The email pattern the OpenAPI document states is the one the server applies: a JSON Schema
validator (ECMA-262 regexes) and the server agree on every character, an address the pattern
allows is accepted as it is (lower-cased), and no kind of whitespace or control character is."""

import re
import sys

import jsonschema_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from zoopay.accounts.service import EMAIL_PATTERN, MAX_EMAIL, normalize_email
from zoopay.app import create_app
from zoopay.config import Settings
from zoopay.errors import BadRequest

# What `\s` means to Python, and to a JSON Schema (ECMA-262) validator, which also counts U+FEFF.
PYTHON_SPACES = [chr(c) for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c))]
ECMA_SPACES = ["\t", "\n", "\v", "\f", "\r", " ", "\xa0", "\u1680", "\u2028", "\u2029"]
ECMA_SPACES += [chr(c) for c in range(0x2000, 0x200B)] + ["\u202f", "\u205f", "\u3000", "\ufeff"]
CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]


@settings(max_examples=300)
@given(st.from_regex(f"^{EMAIL_PATTERN}$", fullmatch=True).filter(lambda e: len(e) <= MAX_EMAIL))
def test_every_address_the_pattern_allows_is_accepted(email: str) -> None:
    assert normalize_email(email) == email.strip().lower()


def test_no_space_or_control_character_is_in_an_address() -> None:
    for character in {*PYTHON_SPACES, *ECMA_SPACES, *CONTROLS}:
        for email in (f"a{character}b@example.com", f"ab@exa{character}mple.com"):
            assert not re.fullmatch(EMAIL_PATTERN, email), repr(character)
            try:
                normalize_email(email)
            except BadRequest as refused:
                assert "is not an email address" in str(refused)
            else:
                raise AssertionError(f"{character!r} was accepted")


def _accepted(email: str) -> bool:
    try:
        normalize_email(email)
    except BadRequest:
        return False
    return True


def test_the_document_and_the_server_agree_on_every_character() -> None:
    """The `id` of a staff user route as a JSON Schema validator reads it (ECMA-262 regexes,
    as schemathesis's generator does), against what the server accepts: every code point, in
    the address's local part and in its domain."""
    document = create_app(Settings()).openapi()
    (user_id,) = [
        parameter["schema"]
        for parameter in document["paths"]["/users/{id}/payment/balance"]["get"]["parameters"]
        if parameter["name"] == "id"
    ]
    validator = jsonschema_rs.validator_for(user_id)
    disagree = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:  # surrogates: no JSON string holds one alone
            continue
        for email in (f"a{chr(code)}b@example.com", f"ab@exa{chr(code)}mple.com"):
            if validator.is_valid(email) != _accepted(email):
                disagree.append(email)
    assert disagree == []
