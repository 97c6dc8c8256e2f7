"""Errors: domain errors are `AppError` subclasses, rendered as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.context import request_id_var

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://taskgate.dev/problems/"


class AppError(Exception):
    """A failure a client can act on: a stable `type`, a `title`, an HTTP status, a human detail."""

    status: ClassVar[int] = status.HTTP_400_BAD_REQUEST
    type: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    headers: dict[str, str]
    # Field-level details (`[{loc, msg, type}]`), rendered as the problem's `errors` member.
    errors: list[dict[str, Any]] | None = None

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)


class BadRequest(AppError):
    """A body the server could not parse at all (a form with a file part where none is taken):
    raised by the framework, rendered by `_http_error` with this type and title."""


class NotFound(AppError):
    status, type, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, type, title = 409, "conflict", "Conflict"


class Forbidden(AppError):
    status, type, title = 403, "forbidden", "Forbidden"


class Unauthorized(AppError):
    status, type, title = 401, "unauthorized", "Not authenticated"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class TooManyRequests(AppError):
    status, type, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(AppError):
    status, type, title = 503, "service-unavailable", "Service unavailable"


class PayloadTooLarge(AppError):
    status, type, title = 413, "payload-too-large", "Payload too large"


def problem(
    request: Request,
    *,
    status_code: int,
    type_: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_,
        "title": title,
        "status": status_code,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
        **extra,
    }
    return JSONResponse(body, status_code=status_code, headers=headers, media_type=PROBLEM_JSON)


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the errors a route can raise."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = responses.setdefault(
            error.status,
            {"description": error.title, "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}},
        )
        if entry["description"] != error.title:
            entry["description"] += f" / {error.title}"
    return responses


_PROBLEM_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101 (registered for AppError only)
    extra = {"errors": exc.errors} if exc.errors is not None else {}
    return problem(
        request,
        status_code=exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        **extra,
    )


def validation_detail(errors: list[dict[str, Any]], *, limit: int = 1000) -> str:
    """One line naming each failed field: `body.input.n: Input should be a valid integer; …`."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)[:limit]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return problem(
        request,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        type_="validation-error",
        title="Request validation failed",
        detail=validation_detail(errors),
        errors=errors,
    )


_HTTP_TITLES = {
    400: BadRequest.title,
    404: NotFound.title,
    405: "Method not allowed",
    413: PayloadTooLarge.title,
}


def _allowed_methods(request: Request) -> str:
    """Every method of the path: FastAPI makes a route per method, and Starlette's 405 names
    only the first route that matched the path."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    title = _HTTP_TITLES.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = _allowed_methods(request)
    return problem(
        request,
        status_code=exc.status_code,
        type_=slug,
        title=title,
        detail=str(exc.detail),
        headers=headers,
    )


# PostgreSQL out of reach or out of connections: the pool's wait ran out, a connection was lost
# or refused. Nothing the client sent is at fault, and nothing was written: a 503 to retry.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # A statement sent on a connection whose server had just sent its shutdown error, before the
    # socket closed: the driver's protocol refuses it ("another operation is in progress").
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means PostgreSQL is unreachable (not a bug, not bad input)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is not None:  # the driver's error, under SQLAlchemy's adapter
            exc = exc.orig.__cause__ or exc.orig
    return isinstance(exc, DATABASE_UNAVAILABLE)


# Foreign keys whose parent may vanish between a request's check and its write (a project
# deleted by another process while its API key was remembered): constraint name → the error.
_vanished_parents: dict[str, type[AppError]] = {}


def when_parent_vanishes(constraint: str, error: type[AppError]) -> None:
    """Answer a violation of the foreign key `constraint` with `error` (a domain registers its
    own parents, so core knows none of them)."""
    _vanished_parents[constraint] = error


def _vanished_parent(exc: BaseException) -> type[AppError] | None:
    """The error registered for the foreign key `exc` violates (through SQLAlchemy, or straight
    from asyncpg on a hot path), if any."""
    if isinstance(exc, sqlalchemy.exc.IntegrityError) and exc.orig is not None:
        exc = exc.orig.__cause__ or exc.orig
    if isinstance(exc, asyncpg.exceptions.ForeignKeyViolationError):
        return _vanished_parents.get(exc.constraint_name or "")
    return None


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if (vanished := _vanished_parent(exc)) is not None:
        return await _app_error(request, vanished())
    if not is_database_unavailable(exc):
        return await _unhandled(request, exc)
    log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
    return problem(
        request,
        status_code=503,
        type_="database-unavailable",
        title="Service unavailable",
        detail="The database is out of reach or busy; retry shortly.",
        headers={"Retry-After": "1"},
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem(
        request,
        status_code=500,
        type_="internal-error",
        title="Internal server error",
        detail="The server failed to handle this request; quote the request id when reporting it.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    database_errors = (
        *DATABASE_UNAVAILABLE,
        sqlalchemy.exc.DBAPIError,
        asyncpg.exceptions.ForeignKeyViolationError,
    )
    for database_error in database_errors:
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unhandled)


PROBLEM_OPENAPI_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
