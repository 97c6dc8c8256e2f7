"""The served OpenAPI document: FastAPI's, completed with what the server answers beyond the
routes' own declarations, so client generators and schemathesis see every status (decision 0017).

Operation ids are the route functions' names (`operation_id`); every operation has a `default`
problem response; answers that middleware, dependencies or error handlers give on any route are
added here, once, rather than in every decorator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.base import SecurityBase
from starlette.routing import BaseRoute

from app.core.errors import (
    PROBLEM_JSON,
    PROBLEM_OPENAPI_SCHEMA,
    BadRequest,
    PayloadTooLarge,
    ServiceUnavailable,
)
from app.core.ratelimit import RateLimited

_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds before the request could pass.",
        "schema": {"type": "integer"},
    }
}
_RETRY_LATER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying, where the server can tell.",
        "schema": {"type": "integer"},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: send `Authorization: Bearer <access token or API key>`.",
        "schema": {"type": "string"},
    }
}
_RATE_HEADERS = {
    "RateLimit-Limit": "Requests the caller's bucket allows per minute.",
    "RateLimit-Remaining": "Requests left in the bucket now.",
    "RateLimit-Reset": "Seconds until the bucket is full again.",
}


D = TypeVar("D")

# Dependencies that read `Authorization` themselves, and the schemes the document names for them.
_SECURED: dict[Any, tuple[SecurityBase, ...]] = {}


def secured_by(dependency: D, *schemes: SecurityBase) -> D:
    """Mark `dependency` (a function or a callable object that routes depend on) as one that
    authenticates with `schemes` by reading the header itself: FastAPI resolves each scheme a
    route depends on as a dependency of its own on every request, where a hot route cannot
    afford them, yet the document must still name them."""
    _SECURED[dependency] = schemes
    return dependency


def operation_id(route: APIRoute) -> str:
    """The route function's name (`submit_task`): short, stable, unique (checked by a test)."""
    return route.name


def build_openapi(
    *,
    title: str,
    version: str,
    description: str,
    routes: list[BaseRoute],
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document for `routes`, with `schemas` added to its components (bodies that routes
    read themselves, such as a multipart upload, and refer to by name)."""
    document = get_openapi(title=title, version=version, description=description, routes=routes)
    _add_marked_security(document, routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_OPENAPI_SCHEMA
    components.update(schemas or {})
    for operation in _operations(document):
        _describe_validation_errors(operation)
        _describe_bodies(operation)
        _describe_authentication(operation)
        _describe_dependencies(operation)
        operation["responses"].setdefault(
            "default", {"description": "Any other error", "content": _PROBLEM}
        )
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return document


def _add_marked_security(document: dict[str, Any], routes: list[BaseRoute]) -> None:
    """The schemes of the `secured_by` dependencies of each route, as FastAPI documents those of
    the schemes a route depends on."""
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        schemes = list(_marked_schemes(route.dependant))
        if not schemes:
            continue
        definitions = document.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in schemes:
            definitions[scheme.scheme_name] = jsonable_encoder(
                scheme.model, by_alias=True, exclude_none=True
            )
        for method in route.methods or ():
            security = document["paths"][route.path_format][method.lower()].setdefault(
                "security", []
            )
            for scheme in schemes:
                if {scheme.scheme_name: []} not in security:
                    security.append({scheme.scheme_name: []})


def _marked_schemes(dependant: Dependant) -> Iterator[SecurityBase]:
    for dependency in dependant.dependencies:
        yield from _SECURED.get(dependency.call, ())
        yield from _marked_schemes(dependency)


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.setdefault("responses", {})
            yield operation


def _add(responses: dict[str, Any], status: int, title: str, **extra: Any) -> dict[str, Any]:
    """Document `status` as a problem titled `title`, next to what is documented already."""
    response: dict[str, Any] = responses.setdefault(
        str(status), {"description": title, "content": _PROBLEM}
    )
    if title not in response["description"]:
        response["description"] += f" / {title}"
    for key, value in extra.items():
        response.setdefault(key, {}).update(value)
    return response


def _describe_validation_errors(operation: dict[str, Any]) -> None:
    """FastAPI documents 422 as its own JSON shape; the server answers with problem+json."""
    response = operation["responses"].get("422")
    if response is not None:
        response["content"] = _PROBLEM
        response["description"] = "Request validation failed"


def _describe_bodies(operation: dict[str, Any]) -> None:
    """A route that reads a body answers 413 past its limit (`BodyLimitMiddleware`), and 400
    for bytes that are no JSON text at all (not UTF-8: FastAPI cannot even report a position)."""
    if "requestBody" not in operation:
        return
    responses = operation["responses"]
    _add(responses, PayloadTooLarge.status, PayloadTooLarge.title)
    if "application/json" in operation["requestBody"].get("content", {}):
        _add(responses, BadRequest.status, BadRequest.title)


def _describe_authentication(operation: dict[str, Any]) -> None:
    """An authenticated route answers 401 with `WWW-Authenticate`, and draws from a rate limit
    (`auth/admission.py`): `RateLimit-*` headers on success, a 429 with `Retry-After` past it."""
    if not operation.get("security"):
        return
    responses = operation["responses"]
    _add(responses, 401, "Not authenticated", headers=_WWW_AUTHENTICATE)
    _add(responses, RateLimited.status, RateLimited.title, headers=_RETRY_AFTER)
    rate_headers = {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in _RATE_HEADERS.items()
    }
    for status_code, response in responses.items():
        if status_code.startswith("2"):
            response.setdefault("headers", {}).update(rate_headers)


def _describe_dependencies(operation: dict[str, Any]) -> None:
    """A route that authenticates or reads a body reaches PostgreSQL or Redis: with either out
    of reach (or the pool exhausted) it answers 503 with `Retry-After`."""
    if operation.get("security") or "requestBody" in operation:
        _add(
            operation["responses"],
            ServiceUnavailable.status,
            ServiceUnavailable.title,
            headers=_RETRY_LATER,
        )
