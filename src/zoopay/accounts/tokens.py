"""API tokens: random secrets shown once and stored only as SHA-256 hashes.

A token carries 256 bits of randomness, so a fast hash is safe: nothing to brute-force.
"""

import hashlib
import secrets

TOKEN_PREFIX = "zoo_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_hint(token: str) -> str:
    """The last 4 characters: enough to tell one's tokens apart, 24 of 256 bits given away."""
    return token[-4:]


def obfuscated(hint: str | None) -> str:
    """How answers other than a token's creation show it."""
    return f"{TOKEN_PREFIX}...{hint}" if hint else f"{TOKEN_PREFIX}..."
