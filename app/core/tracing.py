"""Traces: OpenTelemetry over OTLP/HTTP when `tracing.otlp_endpoint` is set, off and free otherwise.

`setup()` runs once per process at start (`app.wiring.wire_tracing`: the API, each worker, the
scheduler). With no endpoint it does nothing: no OpenTelemetry SDK is imported, nothing is
instrumented, and the hot paths pay one test of `ENABLED` (no header on a message, no span).
With one it installs a tracer provider that batches spans to the collector, and instruments
asyncpg (every statement, the ORM's and the hot paths' hand-written ones), Redis and, in workers,
Celery (a `run/<job>` span per job, its parent read from the message's `traceparent` header).
FastAPI traces its requests itself once a provider is installed (`main.create_app` turns that on).

Jobs carry their cause's trace context because the API writes Celery messages itself
(`worker/wire.py`): `headers()` is what `worker/enqueue.py` puts in a message, taken where the
job is enqueued (in the request, not in the background push that sends it). Spans never carry a
task's input, a result or an error message: ids, types and statuses only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from app import __version__
from app.core.config import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Link, Span, Tracer
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes, AttributeValue

T = TypeVar("T")

# True once `setup` installed a provider: the hot paths' one test.
ENABLED = False

_provider: TracerProvider | None = None
_tracer: Tracer | None = None

# The instrumentation name of taskgate's own spans.
TRACER_NAME = "taskgate"


class TracingUnavailable(RuntimeError):
    """An OTLP endpoint is configured but the `tracing` extra is not installed."""


def setup(settings: TracingSettings, *, role: str, environment: str) -> bool:
    """Install tracing for this process (`role`: api, worker or scheduler) if `settings` name
    an endpoint; return whether it is on. Idempotent; a process sets up one role."""
    global ENABLED, _provider, _tracer
    if settings.otlp_endpoint is None:
        return False
    if ENABLED:
        return True
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(
            "TASKGATE_TRACING__OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "install taskgate with its `tracing` extra (pip install 'taskgate[tracing]')"
        ) from exc
    resource = Resource.create(
        {
            "service.name": f"{settings.service_name}-{role}",
            "service.namespace": settings.service_name,
            "service.version": __version__,
            "deployment.environment.name": environment,
        }
    )
    provider = TracerProvider(resource=resource, sampler=_sampler(settings.sample_ratio))
    exporter = OTLPSpanExporter(
        endpoint=f"{settings.otlp_endpoint}/v1/traces", headers=settings.header_pairs()
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=provider)
    if role == "worker":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME, __version__)
    ENABLED = True
    return True


def _sampler(ratio: float) -> Sampler:
    """`ratio` of the traces started here, and only by a request, a job or a scheduler pass: a
    statement or a Redis command outside any (a broker poll, a pool's check) starts none."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import SpanKind

    class NoLoneClientSpans(Sampler):
        def __init__(self, ratio: float) -> None:
            self._ratio = TraceIdRatioBased(ratio)

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return self._ratio.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoLoneClientSpans{{{self._ratio.get_description()}}}"

    return ParentBased(root=NoLoneClientSpans(ratio))


def shutdown() -> None:
    """Send the spans still buffered and stop exporting (a process that stops)."""
    global ENABLED, _provider
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _provider = False, None


def headers() -> tuple[tuple[str, str], ...] | None:
    """The current span's context as message headers (`traceparent`, and `tracestate` when there
    is one); None when tracing is off or no span is current."""
    if not ENABLED:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items()) or None


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """A span of taskgate's own, current inside the block (None when tracing is off). An error
    leaving the block marks it failed with the error's type only, never its message."""
    if _tracer is None:
        return _NO_SPAN
    return _in_span(_tracer, name, attributes)


@contextlib.contextmanager
def _in_span(
    tracer: Tracer, name: str, attributes: Mapping[str, AttributeValue] | None
) -> Iterator[Span]:
    from opentelemetry.trace import StatusCode

    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__qualname__)
            current.set_status(StatusCode.ERROR)
            raise


async def traced(name: str, attributes: Mapping[str, AttributeValue], awaitable: Awaitable[T]) -> T:
    """Await `awaitable` inside a span (`span`): for a coroutine run as a task of its own."""
    with span(name, attributes):
        return await awaitable
