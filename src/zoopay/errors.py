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
    """A failure the API answers with `status_code` and `error_code`: a subclass names both in
    its header, e.g. `class NotFound(ZoopayError, status=404, code="not_found")`."""

    status_code = 500
    error_code = "internal_error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.error_code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that go with this error."""
        return {}


class BadRequest(ZoopayError, status=400, code="bad_request"): ...


class Unauthorized(ZoopayError, status=401, code="unauthorized"): ...


class PaymentRequired(ZoopayError, status=402, code="payment_required"): ...


class CardDeclined(PaymentRequired, code="card_declined"):
    """The card's issuer refused it (the processor's `card_declined`)."""


class Forbidden(ZoopayError, status=403, code="forbidden"): ...


class NotFound(ZoopayError, status=404, code="not_found"): ...


class Conflict(ZoopayError, status=409, code="conflict"): ...


class PayloadTooLarge(ZoopayError, status=413, code="payload_too_large"): ...


class UnsupportedMediaType(ZoopayError, status=415, code="unsupported_media_type"): ...


class ServiceUnavailable(ZoopayError, status=503, code="service_unavailable"):
    """The database is down, hung or saturated: try again a little later."""

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class MethodNotAllowed(ZoopayError, status=405, code="method_not_allowed"):
    """The path exists, with other methods (the response's Allow header names them)."""
