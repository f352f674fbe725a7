"""zoopay: payments and API credits, wire-compatible with the Payments part of Zoo's API."""
