"""Prometheus metrics, named `taskgate_<noun>_<unit>` and labelled by route template, never by id."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import log_request

REQUEST_DURATION = Histogram(
    "taskgate_http_request_duration_seconds",
    "HTTP request latency by method, route template and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REQUESTS = Counter(
    "taskgate_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)


def _route_template(scope: Scope) -> str:
    # The router records the matched route in the (shared) scope; unmatched paths share one label.
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    # A route of an included router has its path without the router's prefix (`/v1`): the prefix
    # is what the request's path holds before the part the route matched.
    try:
        matched = str(getattr(route, "path_format", template)).format(**scope["path_params"])
    except (KeyError, IndexError, ValueError):
        return template
    path = str(scope.get("path", ""))
    return path.removesuffix(matched) + template if path.endswith(matched) else template


class MetricsMiddleware:
    """Count and time every HTTP request by its route template (bounded label values), and
    write its access log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            duration_s = time.perf_counter() - started
            route = _route_template(scope)
            labels = (scope["method"], route, str(status_code))
            REQUEST_DURATION.labels(*labels).observe(duration_s)
            REQUESTS.labels(*labels).inc()
            log_request(scope, route=route, status=status_code, duration_s=duration_s)
