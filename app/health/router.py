"""Liveness, readiness and metrics: unauthenticated operations endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from app.core import exposition
from app.core.config import Settings
from app.files import storage
from app.worker.names import ALL_QUEUES

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class DependencyCheck(BaseModel):
    status: Literal["ok", "failed"]
    detail: str | None = None


class Readiness(BaseModel):
    # degraded: only Redis failed, and the caller said it can serve without it (`degraded_ok`).
    status: Literal["ok", "degraded", "failed"]
    checks: dict[str, DependencyCheck]


@router.get("/health/live")
async def get_liveness() -> Liveness:
    """200 while the process runs and serves requests."""
    return Liveness()


async def _check(
    name: str, probe: Callable[[], Awaitable[object]], timeout_s: float
) -> DependencyCheck:
    try:
        await asyncio.wait_for(probe(), timeout=timeout_s)
    except TimeoutError:
        log.warning("readiness check timed out", extra={"dependency": name})
        return DependencyCheck(status="failed", detail=f"no answer within {timeout_s:g}s")
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        log.warning("readiness check failed", extra={"dependency": name, "error": repr(exc)})
        return DependencyCheck(status="failed", detail=type(exc).__name__)
    return DependencyCheck(status="ok")


@router.get(
    "/health/ready",
    responses={503: {"model": Readiness, "description": "A dependency did not answer"}},
)
async def get_readiness(
    request: Request, response: Response, degraded_ok: bool = False
) -> Readiness:
    """200 when PostgreSQL, Redis and S3 all answer within the check timeout; 503 naming any that
    failed.

    With `degraded_ok=true` (for a load balancer's or Kubernetes' readiness probe), Redis failing
    alone answers 200 with status `degraded`: without Redis the API still serves reads and
    accepts tasks (the scheduler publishes them once it is back; rate limits fail open or closed
    by setting), so the process should stay in service."""
    settings: Settings = request.app.state.settings
    timeout_s = settings.health.check_timeout_s

    async def postgres() -> None:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await request.app.state.redis.ping()

    async def s3() -> None:
        await storage.check_bucket(settings.s3)

    names = ("postgres", "redis", "s3")
    results = await asyncio.gather(
        *(
            _check(name, probe, timeout_s)
            for name, probe in zip(names, (postgres, redis, s3), strict=True)
        )
    )
    checks = dict(zip(names, results, strict=True))
    failed = {name for name, check in checks.items() if check.status != "ok"}
    if not failed:
        return Readiness(status="ok", checks=checks)
    if degraded_ok and failed == {"redis"}:
        return Readiness(status="degraded", checks=checks)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="failed", checks=checks)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def get_metrics(request: Request) -> Response:
    """Prometheus text exposition of the metrics of every taskgate process on this host (API,
    workers, scheduler) and the broker's queue depths (restrict by network in production)."""
    settings: Settings = request.app.state.settings
    body = await exposition.scrape(
        request.app.state.redis,
        [queue.value for queue in ALL_QUEUES],
        timeout_s=settings.metrics.queue_depth_timeout_s,
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
