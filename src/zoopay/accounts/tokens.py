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
