"""The failures a domain rule can report; the API maps each to its status and error code."""


class ZoopayError(Exception):
    status_code = 500
    error_code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ZoopayError):
    status_code = 400
    error_code = "bad_request"


class Unauthorized(ZoopayError):
    status_code = 401
    error_code = "unauthorized"


class PaymentRequired(ZoopayError):
    status_code = 402
    error_code = "payment_required"


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
