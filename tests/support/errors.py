"""The API's error shape, as every test checks it."""

import httpx

from zoopay.wire import ERROR_CODES


def assert_error(response: httpx.Response, status: int, error_code: str | None = None) -> str:
    """`response` is the error `status` in Zoo's shape, with its request id; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message", "request_id"}, body
    assert body["error_code"] == (error_code or ERROR_CODES[status])
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] and body["request_id"] == response.headers["x-api-call-id"]
    message: str = body["message"]
    return message
