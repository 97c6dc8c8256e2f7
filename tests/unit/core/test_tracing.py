"""Tracing off costs nothing and loads nothing; on, it names the parent of the jobs it enqueues.

Each test runs in a process of its own: a tracer provider is process-wide and instrumentation
patches classes, so neither may leak into this one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import orjson
import pytest

from app.core.config import TracingSettings
from app.worker import wire


def _run(code: str) -> Any:
    """Run `code` in a fresh interpreter; what it printed last, as JSON."""
    done = subprocess.run(  # noqa: S603 (this interpreter, the test's own code)
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout.strip().splitlines()[-1])


# What FastAPI and redis-py import of OpenTelemetry by themselves: FastAPI the API (its own
# telemetry), redis-py the metrics SDK when it is installed (its own, optional, observability).
# With tracing off, taskgate adds nothing to it, and never the tracing SDK, an exporter or an
# instrumentation. An app serves a request through its whole stack, without engines (no lifespan).
_REQUEST = """
import asyncio, json, sys
import fastapi, redis, redis.asyncio
BASELINE = {name for name in sys.modules if name.startswith("opentelemetry")}
import httpx
from app.core.config import Settings
from app.main import create_app

def served(app):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get("/health/live")).status_code
    return asyncio.run(go())

def layers(app):
    names, layer = [], app.middleware_stack
    while layer is not None:
        names.append(type(layer).__module__ + "." + type(layer).__name__)
        layer = getattr(layer, "app", None)
    return names

TRACING = ("opentelemetry.sdk.trace", "opentelemetry.instrumentation", "opentelemetry.exporter")

def otel_loaded():  # what this process loaded of OpenTelemetry beyond those, and of tracing
    loaded = {name for name in sys.modules if name.startswith("opentelemetry")}
    return sorted(loaded - BASELINE) + sorted(name for name in loaded if name.startswith(TRACING))
"""


class TestOff:
    def test_an_app_without_an_endpoint_loads_no_sdk_and_adds_no_middleware(self) -> None:
        found = _run(
            _REQUEST
            + """
app = create_app(Settings(env="test"))
status = served(app)
print(json.dumps({"status": status, "loaded": otel_loaded(), "layers": layers(app),
                  "user": [m.cls.__module__ for m in app.user_middleware]}))
"""
        )

        assert found["status"] == 200
        assert found["loaded"] == []
        assert found["layers"]  # the stack was built and walked
        assert not [name for name in found["layers"] if name.startswith("opentelemetry")]
        assert not [name for name in found["user"] if name.startswith("opentelemetry")]

    def test_an_app_without_an_endpoint_makes_no_span_even_under_someone_else_s_provider(
        self,
    ) -> None:
        # Another library of the process installs an SDK provider: an app built with tracing off
        # still records nothing, while one built with it on records its requests (FastAPI's).
        found = _run(
            _REQUEST
            + """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

served(create_app(Settings(env="test")))
off = [span.name for span in exporter.get_finished_spans()]
exporter.clear()
on = Settings(env="test", tracing={"otlp_endpoint": "http://127.0.0.1:9"})
served(create_app(on))
print(json.dumps({"off": off, "on": [span.name for span in exporter.get_finished_spans()]}))
"""
        )

        assert found["off"] == []
        assert "GET /health/live" in found["on"]

    def test_the_hot_path_helpers_do_nothing(self) -> None:
        found = _run(
            _REQUEST
            + """
import app.tasks.jobs, app.worker.scheduler
from app.core import tracing
from app.worker import enqueue
from app.worker.names import Job, Queue
with tracing.span("x") as span:
    message = enqueue._message(Job.execute_task, ["t1"], Queue.default, None, None)
print(json.dumps({"span": span is None, "headers": tracing.headers(), "trace": message.trace,
    "loaded": otel_loaded()}))
"""
        )

        assert found == {"span": True, "headers": None, "trace": None, "loaded": []}


class TestOn:
    def test_a_job_enqueued_inside_a_span_carries_that_span_as_its_parent(self) -> None:
        found = _run(
            """
import json
from app.core import tracing
from app.core.config import TracingSettings
from app.worker import enqueue
from app.worker.names import Job, Queue
tracing.setup(TracingSettings(otlp_endpoint="http://127.0.0.1:9"), role="api",
              environment="test")
with tracing.span("submit") as span:
    message = enqueue._message(Job.execute_task, ["t1"], Queue.default, None, None)
    context = span.get_span_context()
outside = enqueue._message(Job.execute_task, ["t2"], Queue.default, None, None)
print(json.dumps({"trace": message.trace, "trace_id": f"{context.trace_id:032x}",
                  "span_id": f"{context.span_id:016x}", "outside": outside.trace}))
"""
        )

        [(name, value)] = found["trace"]
        assert name == "traceparent"
        version, trace_id, span_id, flags = value.split("-")
        assert (version, trace_id, span_id) == ("00", found["trace_id"], found["span_id"])
        assert int(flags, 16) & 1  # sampled
        assert found["outside"] is None  # no span current: no header

    def test_a_statement_outside_any_request_job_or_pass_starts_no_trace(self) -> None:
        found = _run(
            """
import json
from opentelemetry import trace
from app.core import tracing
from app.core.config import TracingSettings
tracing.setup(TracingSettings(otlp_endpoint="http://127.0.0.1:9"), role="worker",
              environment="test")
tracer = trace.get_tracer("test")
lone = tracer.start_span("LPUSH", kind=trace.SpanKind.CLIENT)
with tracing.span("task echo") as attempt:
    inner = tracer.start_span("LPUSH", kind=trace.SpanKind.CLIENT)
    recorded = attempt.is_recording()  # (an ended span records nothing more)
server = tracer.start_span("GET /x", kind=trace.SpanKind.SERVER)
print(json.dumps({"lone": lone.is_recording(), "attempt": recorded,
                  "inner": inner.is_recording(), "server": server.is_recording()}))
"""
        )

        assert found == {"lone": False, "attempt": True, "inner": True, "server": True}

    def test_an_endpoint_without_the_extra_stops_the_process_with_a_clear_error(self) -> None:
        found = _run(
            """
import json, sys
for name in ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation"):
    sys.modules[name] = None  # what a process without the `tracing` extra finds
from app.core import tracing
from app.core.config import TracingSettings
try:
    tracing.setup(TracingSettings(otlp_endpoint="http://127.0.0.1:9"), role="worker",
                  environment="test")
except tracing.TracingUnavailable as exc:
    print(json.dumps({"error": str(exc), "enabled": tracing.ENABLED}))
"""
        )

        assert "taskgate[tracing]" in found["error"]
        assert "TASKGATE_TRACING__OTLP_ENDPOINT" in found["error"]
        assert found["enabled"] is False


class TestTracingSettings:
    def test_off_by_default(self) -> None:
        assert TracingSettings().enabled is False

    def test_the_endpoint_is_a_base_url_without_its_trailing_slash(self) -> None:
        assert TracingSettings(otlp_endpoint="http://c:4318/").otlp_endpoint == "http://c:4318"

    @pytest.mark.parametrize("endpoint", ["c:4318", "grpc://c:4317", ""])
    def test_refuses_an_endpoint_that_is_not_http(self, endpoint: str) -> None:
        with pytest.raises(ValueError, match="otlp_endpoint"):
            TracingSettings(otlp_endpoint=endpoint)

    def test_headers_are_key_value_pairs(self) -> None:
        settings = TracingSettings(headers="x-api-key=s3cret, team = ops")

        assert settings.header_pairs() == {"x-api-key": "s3cret", "team": "ops"}
        assert "s3cret" not in repr(settings)

    def test_refuses_headers_that_are_not_pairs(self) -> None:
        with pytest.raises(ValueError, match="key=value"):
            TracingSettings(headers="just-a-token")


class TestMessageHeaders:
    def test_the_trace_context_goes_next_to_the_request_id(self) -> None:
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

        raw = wire.task_message(
            "tasks.execute",
            ["t1"],
            queue="default",
            time_limit=None,
            request_id="r1",
            trace=[("traceparent", traceparent)],
        )

        headers = orjson.loads(raw)["headers"]
        assert (headers["request_id"], headers["traceparent"]) == ("r1", traceparent)

    def test_no_trace_context_no_header(self) -> None:
        raw = wire.task_message("tasks.execute", ["t1"], queue="default", time_limit=None)

        assert "traceparent" not in orjson.loads(raw)["headers"]
