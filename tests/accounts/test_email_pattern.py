"""The email pattern the OpenAPI document states is the one the server applies: whatever a client
generates from the document is accepted, and no kind of whitespace or control character is."""

import re
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from zoopay.accounts.service import EMAIL_PATTERN, MAX_EMAIL, normalize_email
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
