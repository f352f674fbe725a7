"""What the live server shows besides the payments endpoints: request ids on every response,
its OpenAPI document at `/`, Swagger UI at `/docs`, and the staff user of its first start."""

import uuid

import httpx

from tests.e2e.conftest import LiveServer, People

ENDPOINTS = {
    "/user/payment/balance": {"get"},
    "/org/payment/balance": {"get"},
    "/users/{id}/payment/balance": {"get", "put"},
    "/orgs/{id}/payment/balance": {"get", "put"},
    "/user/payment/subscriptions": {"get", "post", "put"},
    "/org/payment/subscriptions": {"get", "post", "put"},
    "/users/{id}/payment/subscriptions": {"put"},
    "/orgs/{id}/enterprise/pricing": {"put"},
    "/pricing/subscriptions": {"get"},
    "/org": {"get", "post", "put", "delete"},
    "/org/members": {"get", "post"},
    "/org/members/{user_id}": {"get", "put", "delete"},
    "/org/membership": {"delete"},
    "/org/invitations": {"get"},
    "/org/invitations/{id}": {"delete"},
    "/user/org-invitations": {"get"},
    "/user/org-invitations/{id}/accept": {"post"},
    "/user/org-invitations/{id}/decline": {"post"},
    "/orgs/{id}/members": {"post"},
}
# The refusals the org endpoints declare, so that a client knows them from the document.
DECLARED_ERRORS = {
    ("/org", "delete"): {"403", "404", "409"},
    ("/org/members", "post"): {"403", "404", "409"},
    ("/org/members/{user_id}", "put"): {"403", "404", "409"},
    ("/org/membership", "delete"): {"404", "409"},
    ("/user/org-invitations/{id}/accept", "post"): {"404", "409"},
    ("/orgs/{id}/members", "post"): {"403", "404", "409"},
}


def _request_id(response: httpx.Response) -> str:
    value = response.headers["X-Api-Call-Id"]
    assert str(uuid.UUID(value)) == value
    return value


def test_every_response_carries_its_request_id(people: People, http: httpx.Client) -> None:
    user = people.user()
    first = http.get("/user/payment/balance", headers=user.headers)
    second = http.get("/user/payment/balance", headers=user.headers)
    assert first.status_code == second.status_code == 200
    assert _request_id(first) != _request_id(second)
    assert _request_id(http.get("/pricing/subscriptions")) != _request_id(first)

    errors = [
        (http.get("/user/payment/balance"), 401, "unauthorized"),
        (http.get("/user/payment/balance", headers={"Authorization": "Bearer nope"}), 401, None),
        (http.get("/org/payment/balance", headers=user.headers), 404, "not_found"),
        (http.get(f"/users/{user.id}/payment/balance", headers=user.headers), 403, "forbidden"),
        (http.get("/no/such/path", headers=user.headers), 404, "not_found"),
        (http.delete("/pricing/subscriptions"), 405, "method_not_allowed"),
        (
            http.put(
                "/user/payment/subscriptions",
                headers={**user.headers, "Content-Type": "text/plain"},
                content=b'{"modeling_app": "pro"}',
            ),
            415,
            "unsupported_media_type",
        ),
    ]
    for response, status, code in errors:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error_code", "message", "request_id"}
        assert body["request_id"] == _request_id(response)
        assert body["error_code"] == (code or "unauthorized")
        assert body["message"]


def test_root_serves_the_openapi_document_of_every_endpoint(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "zoopay"
    paths = document["paths"]
    for path, methods in ENDPOINTS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    for (path, method), statuses in DECLARED_ERRORS.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method, set(responses))
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
    assert http.get("/openapi.json").json() == document


def test_docs_serve_swagger_ui(http: httpx.Client) -> None:
    response = http.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "SwaggerUIBundle" in page
    assert "/openapi.json" in page


def test_first_start_created_a_staff_user_and_printed_its_token(server: LiveServer) -> None:
    log = server.log.read_text()
    assert "First start: created staff user staff@zoopay.local" in log
    token_line = log.split("shown only this once:\n", 1)[1].splitlines()[0].strip()
    assert len(token_line) >= 32
