"""The failures a domain rule can report; the API maps each to its status and error code."""

# How much of a client's input an error message may quote: enough to recognise it, never a
# megabyte echoed back (or into a log).
QUOTE_LIMIT = 64


def quoted(value: object) -> str:
    """`value` as an error message quotes it: its repr, cut to a short prefix."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > QUOTE_LIMIT:
        return repr(text[:QUOTE_LIMIT]) + f"... ({len(text)} characters)"
    return repr(text)


class ZoopayError(Exception):
    status_code = 500
    error_code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that go with this error."""
        return {}


class BadRequest(ZoopayError):
    status_code = 400
    error_code = "bad_request"


class Unauthorized(ZoopayError):
    status_code = 401
    error_code = "unauthorized"


class PaymentRequired(ZoopayError):
    status_code = 402
    error_code = "payment_required"


class CardDeclined(PaymentRequired):
    """The card's issuer refused it (the processor's `card_declined`)."""

    error_code = "card_declined"


class Forbidden(ZoopayError):
    status_code = 403
    error_code = "forbidden"


class NotFound(ZoopayError):
    status_code = 404
    error_code = "not_found"


class Conflict(ZoopayError):
    status_code = 409
    error_code = "conflict"


class PayloadTooLarge(ZoopayError):
    status_code = 413
    error_code = "payload_too_large"


class UnsupportedMediaType(ZoopayError):
    status_code = 415
    error_code = "unsupported_media_type"


class ServiceUnavailable(ZoopayError):
    """The database is down, hung or saturated: try again a little later."""

    status_code = 503
    error_code = "service_unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}
