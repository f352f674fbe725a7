"""The OpenAPI document, made to say exactly what the server answers.

FastAPI declares a 422 that zoopay never sends (its validation errors are 400s in the API's error
shape) and none of the errors a route does send. Here every operation's error statuses are
derived from what it depends on — a token, a role, a body, parameters, the database — plus the
domain errors its route declares with `errors(...)`.
"""

from collections.abc import Callable, Iterable
from typing import Any, Literal

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from zoopay.api import deps
from zoopay.api.hotpath import HotRoute
from zoopay.wire import Error

DESCRIPTIONS = {
    400: "Bad input: the message names the problem",
    401: "No API token, or one that is not valid",
    402: "Payment required: the message says what to do",
    403: "The caller may not do this",
    404: "No such thing, or not the caller's",
    405: "Method not allowed: the Allow header lists the methods of this path",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    415: "The request body is not JSON",
    503: "The database is not answering in time (or, for reports, too many wait):"
    " retry after `Retry-After` seconds",
}

# Every route with a token answers 401, and 503 when the database does not answer in time;
# with a body, these.
AUTH_ERRORS = frozenset({401, 503})
BODY_ERRORS = frozenset({400, 413, 415})

# What each dependency may refuse with, beside what the ones it depends on refuse with.
_DEPENDENCY_ERRORS: dict[Callable[..., Any], set[int]] = {
    deps.current_principal: set(AUTH_ERRORS),
    deps.current_user: {403},
    deps.staff_user: {403},
    deps.org_membership: {404},
    deps.org_reader: {403, 404},
    deps.org_admin: {403},
    # Staff's lookup of the user or org a path names.
    deps.any_user: {404},
    deps.any_org: {404},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's domain errors, for its decorator's `responses=`."""
    return {status: {"model": Error, "description": DESCRIPTIONS[status]} for status in statuses}


def error_statuses(route: APIRoute | HotRoute) -> set[int]:
    """Every error status `route` can answer: what it declares, what it depends on refuses
    (every hot route takes a token), and what follows from what it reads."""
    if isinstance(route, HotRoute):
        declared = set(route.errors) | AUTH_ERRORS
        has_body, has_parameters = route.body is not None, bool(route.query)
    else:
        declared = {int(status) for status in route.responses if int(status) >= 400}
        declared |= _dependency_errors(route.dependant)
        has_body, has_parameters = route.body_field is not None, _has_parameters(route.dependant)
    statuses = declared | (BODY_ERRORS if has_body else set())
    return statuses | ({400} if has_parameters else set())


def _dependency_errors(dependant: Dependant) -> set[int]:
    found = set(_DEPENDENCY_ERRORS.get(dependant.call, set())) if dependant.call else set()
    for sub in dependant.dependencies:
        found |= _dependency_errors(sub)
    return found


def _has_parameters(dependant: Dependant) -> bool:
    own = dependant.path_params or dependant.query_params or dependant.header_params
    return bool(own) or any(_has_parameters(sub) for sub in dependant.dependencies)


def declare_errors(document: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    """Replace FastAPI's 422s with the statuses each route really answers."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.setdefault("Error", Error.model_json_schema())
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            responses.pop("422", None)
            for status in sorted(error_statuses(route)):
                responses[str(status)] = error_response(status)
    return document


def declare_hot_routes(document: dict[str, Any], routes: Iterable[HotRoute]) -> dict[str, Any]:
    """Add the hot routes, which FastAPI's generator does not see, to its document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for route in routes:
        operation: dict[str, Any] = {
            "tags": [route.tag],
            "summary": route.summary,
            "operationId": route.name,
            "security": [{"HTTPBearer": []}],
            "responses": {
                str(route.status): _response("Success", route.response, schemas),
                **{
                    str(status): _response(text, route.response, schemas)
                    for status, text in route.also.items()
                },
                **{
                    str(status): error_response(status, route.errors.get(status))
                    for status in sorted(error_statuses(route))
                },
            },
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(route.body, schemas, "validation")}
                },
            }
        if route.query:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": text,
                    "schema": {"type": "boolean", "default": True},
                }
                for name, text in route.query.items()
            ]
        document.setdefault("paths", {}).setdefault(route.path, {})[route.method.lower()] = (
            operation
        )
    return document


def _response(description: str, model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _schema_ref(model, schemas)}},
    }


def _schema_ref(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: Literal["validation", "serialization"] = "serialization",
) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
