"""The HTTP application: `create_app()` wires settings, engines, middleware, errors and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from app import __version__, wiring
from app.auth.admission import Admission
from app.auth.router import router as auth_router
from app.core import tracing
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import PROBLEM_OPENAPI_SCHEMA, PayloadTooLarge, install_error_handlers
from app.core.headers import SecurityHeaders
from app.core.logging import configure_logging
from app.core.metrics import MetricsMiddleware, watch_pool
from app.core.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.core.ratelimit import RateLimited, RateLimiter
from app.core.redis import create_redis
from app.events.router import router as events_router
from app.files.router import router as files_router
from app.files.router import upload_file
from app.files.upload import max_body_bytes
from app.health.router import router as health_router
from app.projects.cache import ProjectCache
from app.projects.limits import rates_lookup
from app.projects.router import router as projects_router
from app.tasks.cache import TaskCache
from app.tasks.router import router as tasks_router
from app.tasks.waiter import TaskWaiter
from app.webhooks.router import router as webhooks_router

DESCRIPTION = (
    "Run background work behind an authenticated REST API: submit typed tasks to a project, "
    "then poll, long-poll or receive signed webhooks. Errors are `application/problem+json`."
)


class TaskgateAPI(FastAPI):
    """FastAPI with the request id outermost: Starlette puts its `ServerErrorMiddleware` outside
    every added middleware, so a 500 would be rendered after the id was reset, and sent past it."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return RequestIdMiddleware(
            super().build_middleware_stack(),
            trusted_proxies=settings.api.trusted_proxies,
            security_headers=SecurityHeaders(
                hsts_max_age_s=settings.api.hsts_max_age_s,
                hsts_always=settings.api.hsts_always,
                docs_paths=(self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url),
            ),
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (the environment's when omitted)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        traced = wiring.wire_tracing(settings, "api")
        engine = create_engine(settings.database)
        watch_pool(engine, "api")
        redis = create_redis(settings.redis)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = redis
        if settings.cache.enabled:
            app.state.task_cache = TaskCache(redis, settings.cache)
            app.state.project_cache = ProjectCache(redis, settings.cache)
        if settings.rate_limits.enabled:
            app.state.admission = Admission(
                RateLimiter(redis, settings.rate_limits),
                settings=settings,
                rates_of=rates_lookup(settings.projects),
            )
        # Jobs are published right after commit, without delaying the response.
        app.state.publisher = publisher = wiring.wire_process(settings, background=True)
        app.state.task_waiter = waiter = TaskWaiter(settings.database)
        await waiter.start()
        try:
            yield
        finally:
            await publisher.close()
            wiring.unwire_process()
            await waiter.stop()
            await redis.aclose()
            await engine.dispose()
            if traced:
                tracing.shutdown()

    app = TaskgateAPI(
        title="taskgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=_telemetry(settings),
    )
    app.state.settings = settings
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api.max_body_bytes,
        route_limits={upload_file: max_body_bytes(settings.files.max_direct_upload_bytes)},
    )
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)
    # FastAPI matches a request against the routes in this order, one regex each: the task
    # routes (submit, the poll) come first.
    app.include_router(tasks_router, prefix="/v1")
    app.include_router(health_router)
    app.include_router(auth_router, prefix="/v1")
    app.include_router(projects_router, prefix="/v1")
    app.include_router(events_router, prefix="/v1")
    app.include_router(webhooks_router, prefix="/v1")
    app.include_router(files_router, prefix="/v1")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = PROBLEM_OPENAPI_SCHEMA
            _describe_validation_errors_as_problems(schema)
            _describe_body_limits(schema)
            _describe_rate_limits(schema)
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry: a span per request (and its dependencies, endpoint and
    serialization) once `core.tracing` installed a provider; off entirely without an endpoint,
    whatever else in the process configures OpenTelemetry. Never its metrics (`/metrics` has
    ours) nor its log records (they carry exception messages), never its own exporter setup."""
    on = settings.tracing.enabled
    return {
        "tracing": on,
        "operation_spans": on,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
    }


def _describe_validation_errors_as_problems(schema: dict[str, Any]) -> None:
    """FastAPI documents 422 as its own JSON shape; the server answers with problem+json."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["content"] = problem
                response["description"] = "Request validation failed"


def _describe_body_limits(schema: dict[str, Any]) -> None:
    """Every route that reads a body answers 413 past its limit (`BodyLimitMiddleware`)."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            response = operation.setdefault("responses", {}).setdefault(
                "413", {"description": PayloadTooLarge.title, "content": problem}
            )
            if PayloadTooLarge.title not in response["description"]:
                response["description"] += f" / {PayloadTooLarge.title}"


_RATE_HEADERS = {
    "RateLimit-Limit": "Requests the caller's bucket allows per minute.",
    "RateLimit-Remaining": "Requests left in the bucket now.",
    "RateLimit-Reset": "Seconds until the bucket is full again.",
}


def _describe_rate_limits(schema: dict[str, Any]) -> None:
    """Every authenticated route draws from a rate limit (`auth/admission.py`): its answers carry
    `RateLimit-*` headers, and a 429 with `Retry-After` when the bucket is empty."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    headers = {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in _RATE_HEADERS.items()
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "429",
                {
                    "description": RateLimited.title,
                    "content": problem,
                    "headers": {
                        "Retry-After": {
                            "description": "Seconds before the request could pass.",
                            "schema": {"type": "integer"},
                        }
                    },
                },
            )
            for status_code, response in responses.items():
                if status_code.startswith("2"):
                    response.setdefault("headers", {}).update(headers)


def create_app_from_env() -> FastAPI:
    """Uvicorn factory (`uvicorn --factory app.main:create_app_from_env`): settings from the env."""
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
