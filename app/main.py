"""The HTTP application: `create_app()` wires settings, engines, middleware, errors and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from app import __version__, wiring
from app.auth.admission import Admission
from app.auth.router import router as auth_router
from app.console.files import PREFIX as CONSOLE_PREFIX
from app.console.files import console_files, storage_origins
from app.core import tracing
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import install_error_handlers
from app.core.headers import SecurityHeaders
from app.core.logging import configure_logging
from app.core.metrics import MetricsMiddleware, watch_pool
from app.core.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.core.openapi import build_openapi, operation_id
from app.core.ratelimit import RateLimiter
from app.core.redis import create_redis
from app.events.router import router as events_router
from app.files.router import UPLOAD_FORM_SCHEMA, upload_file
from app.files.router import router as files_router
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
                console_prefix=CONSOLE_PREFIX,
                storage_origins=storage_origins(settings),
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
                rates_of=rates_lookup(
                    settings.projects, remember_s=settings.security.principal_cache_s
                ),
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
        generate_unique_id_function=operation_id,
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
    # Last: only a request no API route matched is tried against the console's files.
    app.mount(CONSOLE_PREFIX, console_files(), name="console")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                schemas={"FileUploadForm": UPLOAD_FORM_SCHEMA},
            )
            _describe_limits(app.openapi_schema, settings)
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


def _describe_limits(document: dict[str, Any], settings: Settings) -> None:
    """Bounds that come from settings rather than from a schema: an announced file's size."""
    size = document["components"]["schemas"]["FileCreate"]["properties"]["size"]
    size["maximum"] = settings.files.max_upload_bytes


def create_app_from_env() -> FastAPI:
    """Uvicorn factory (`uvicorn --factory app.main:create_app_from_env`): settings from the env."""
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
