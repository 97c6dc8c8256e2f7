"""Traces of real processes: one trace from the submit request to the handler run on a worker.

An OTLP/HTTP receiver of the test's own collects what the API, the worker and the scheduler
export (`POST /v1/traces`, protobuf), decoded with the OpenTelemetry protocol's own classes.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from celery import Celery
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.webhooks.receiver import running_receiver
from tests.integration.webhooks.support import admin_headers, create_endpoint, remove_endpoints
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup, free_port, wait_until

pytestmark = pytest.mark.e2e

CLIENT = SpanProto.SpanKind.SPAN_KIND_CLIENT


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int  # the protocol's `Span.SpanKind`
    attributes: dict[str, str | int | float | bool]


def _value(value: AnyValue) -> str | int | float | bool:
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind)
        if kind in ("string_value", "int_value", "double_value", "bool_value")
        else str(value)
    )


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: every span of every export, and the count of
    requests of any kind it got."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._received(self.path, body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads what was received, not a log

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _received(self, path: str, body: bytes) -> None:
        with self._lock:
            self.requests += 1
        if path != "/v1/traces":
            return
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans.extend(spans)

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver(processes: ProcessGroup) -> Iterator[Receiver]:
    """A receiver that outlives the test's processes: they export their last spans on the way
    out, and a closed receiver would cost each of them the exporter's retries (10 s)."""
    receiver = Receiver()
    yield receiver
    processes.stop_all()
    receiver.close()


def _platform(
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    engine: AsyncEngine,
    tmp_path: Path,
    extra: dict[str, str],
) -> Platform:
    return Platform(
        processes=processes,
        env={
            **process_env,
            **FAST_SETTINGS,
            "TASKGATE_METRICS__DIR": str(tmp_path / "metrics"),
            **extra,
        },
        logs=tmp_path,
        celery=celery_control,
        engine=engine,
    )


def _chain(spans: list[Span], leaf: Span) -> list[Span]:
    """`leaf` and its ancestors, up to the root (or the first parent that was not received)."""
    by_id = {span.span_id: span for span in spans}
    chain = [leaf]
    while chain[-1].parent_id and chain[-1].parent_id in by_id:
        chain.append(by_id[chain[-1].parent_id])
    return chain


async def _submit_and_finish(platform: Platform, marker: str) -> str:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        response = await client.post(
            f"/v1/projects/{platform.project_id}/tasks",
            json={"type": "echo", "input": {"note": marker}},
            headers=platform.headers,
        )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    assert await platform.wait_terminal([task_id], timeout_s=60) == {"succeeded": 1}
    return task_id


class TestOneTraceFromSubmitToHandler:
    async def test_the_submit_request_its_sql_and_the_worker_s_handler_share_one_trace(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        engine: AsyncEngine,
        tmp_path: Path,
        receiver: Receiver,
    ) -> None:
        platform = _platform(
            processes,
            process_env,
            celery_control,
            engine,
            tmp_path,
            {
                "TASKGATE_TRACING__OTLP_ENDPOINT": receiver.url,
                "TASKGATE_TRACING__SERVICE_NAME": "tg",
                "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's batching: export within 0.1 s
            },
        )
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=1)
        marker = f"input-{uuid.uuid4().hex}"

        task_id = await _submit_and_finish(platform, marker)

        def handler_span() -> Span | None:
            return next(
                (
                    span
                    for span in receiver.snapshot()
                    if span.name == "handler echo"
                    and span.attributes.get("taskgate.task.id") == task_id
                ),
                None,
            )

        wait_until(lambda: handler_span() is not None, timeout_s=30, what="the handler's span")
        handler = handler_span()
        assert handler is not None
        # The attempt's span ends after its handler's: wait for the whole chain to arrive.
        wait_until(
            lambda: _chain(receiver.snapshot(), handler)[-1].service == "tg-api",
            timeout_s=30,
            what="the chain of spans up to the submit request",
        )
        spans = receiver.snapshot()
        chain = _chain(spans, handler)
        names = [(span.service, span.name) for span in chain]
        assert names[:3] == [
            ("tg-worker", "handler echo"),
            ("tg-worker", "task echo"),
            ("tg-worker", "run/tasks.execute"),
        ]
        root = chain[-1]
        assert (root.service, root.name) == ("tg-api", "POST /v1/projects/{project_id}/tasks")
        assert root.parent_id == ""  # the request's own: no traceparent was sent
        assert root.attributes["http.route"] == "/v1/projects/{project_id}/tasks"
        assert root.attributes["http.response.status_code"] == 202
        trace = [span for span in spans if span.trace_id == root.trace_id]
        assert {span.trace_id for span in chain} == {root.trace_id}
        # SQL of the request (its insert) and of the worker (lease, finish), in the same trace.
        api_sql = [s for s in trace if s.service == "tg-api" and "db.system" in s.attributes]
        worker_sql = [s for s in trace if s.service == "tg-worker" and "db.system" in s.attributes]
        assert any(
            "insert into tasks" in str(s.attributes.get("db.statement", "")).lower()
            for s in api_sql
        )
        assert worker_sql
        assert any(
            s.service == "tg-api" and s.attributes.get("db.system") == "redis" for s in trace
        )
        attempt = chain[1]
        assert attempt.attributes == {
            "taskgate.task.id": task_id,
            "taskgate.project.id": str(platform.project_id),
            "taskgate.task.type": "echo",
            "taskgate.task.attempt": 1,
            "taskgate.task.status": "succeeded",
        }
        # The input never reaches a span, nor do its values.
        assert not [s for s in spans if any(marker in str(v) for v in s.attributes.values())]
        # A statement or command outside any request, job or pass (a broker poll) starts none.
        assert not [s for s in spans if s.kind == CLIENT and not s.parent_id]
        # The scheduler traces its passes as a process of its own.
        wait_until(
            lambda: any(s.service == "tg-scheduler" for s in receiver.snapshot()),
            timeout_s=30,
            what="a span of the scheduler",
        )


class TestStockPreforkWorker:
    async def test_celery_a_app_worker_s_pool_processes_trace_their_jobs_too(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        engine: AsyncEngine,
        tmp_path: Path,
        receiver: Receiver,
    ) -> None:
        # Tracing is set up in the main process; its prefork children inherit it across fork.
        platform = _platform(
            processes,
            process_env,
            celery_control,
            engine,
            tmp_path,
            {"TASKGATE_TRACING__OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        await platform.create_project()
        platform.start_api()
        hostname = f"stock-trace-{free_port()}@localhost"
        processes.start(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "app",
                "worker",
                "--concurrency=1",
                "--loglevel=info",
                f"--hostname={hostname}",
            ],
            env={
                **platform.env,
                "TASKGATE_WORKER__POOL": "prefork",
                "TASKGATE_WORKER__CONCURRENCY": "1",
            },
            log_path=tmp_path / "celery.log",
        )

        task_id = await _submit_and_finish(platform, "prefork")

        def chain() -> list[Span]:
            spans = receiver.snapshot()
            handlers = [
                s
                for s in spans
                if s.name == "handler echo" and s.attributes.get("taskgate.task.id") == task_id
            ]
            return _chain(spans, handlers[0]) if handlers else []

        wait_until(
            lambda: bool(chain()) and chain()[-1].service == "taskgate-api",
            timeout_s=30,
            what="the pool process's handler span under the submit request's",
        )
        names = [(span.service, span.name) for span in chain()]
        assert names[:3] == [
            ("taskgate-worker", "handler echo"),
            ("taskgate-worker", "task echo"),
            ("taskgate-worker", "run/tasks.execute"),
        ]


class TestWebhookDeliveryInTheTrace:
    async def test_the_delivery_of_a_finished_task_continues_its_submit_s_trace(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        engine: AsyncEngine,
        tmp_path: Path,
        receiver: Receiver,
    ) -> None:
        platform = _platform(
            processes,
            process_env,
            celery_control,
            engine,
            tmp_path,
            {"TASKGATE_TRACING__OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        try:
            admin = await admin_headers(platform)
            with running_receiver() as hooks:
                await create_endpoint(platform, admin, hooks.url, ["task.succeeded"])
                platform.start_worker(concurrency=1)
                task_id = await _submit_and_finish(platform, "hooked")
                await hooks.wait_for(1, timeout_s=30)

                def traces() -> tuple[set[str], set[str]]:
                    spans = receiver.snapshot()
                    handler = {
                        s.trace_id
                        for s in spans
                        if s.name == "handler echo"
                        and s.attributes.get("taskgate.task.id") == task_id
                    }
                    delivery = {s.trace_id for s in spans if s.name == "run/webhooks.deliver"}
                    return handler, delivery

                wait_until(
                    lambda: all(traces()), timeout_s=30, what="the handler's and delivery's spans"
                )
        finally:
            await remove_endpoints(platform)

        handler_trace, delivery_traces = traces()
        assert len(handler_trace) == 1
        assert handler_trace <= delivery_traces


class TestTracingOff:
    async def test_without_an_endpoint_tasks_run_and_nothing_is_exported(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        engine: AsyncEngine,
        tmp_path: Path,
        receiver: Receiver,
    ) -> None:
        # What would make stock OpenTelemetry (or FastAPI's own setup) export to the receiver:
        # taskgate reads neither, so nothing is sent.
        platform = _platform(
            processes,
            process_env,
            celery_control,
            engine,
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "FASTAPI_OTEL_AUTO_CONFIGURE": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=1)

        await _submit_and_finish(platform, "off")
        await asyncio.sleep(1.0)  # ten export intervals, had an exporter been made

        assert receiver.requests == 0
