"""OpenTelemetry traces across API -> Kafka -> dispatcher, off unless `tracing.enabled`.

A request gets a server span (its parent the caller's `traceparent`, when it sends one). A report
or alert accepted inside it carries the span's W3C `traceparent` in its envelope
(`EventEnvelope.trace`), through the outbox and the bus, to the dispatcher, whose span for the
batch that applies it is a child of that span (one report in the batch) or links to each of
them (several). So a resident's report is one trace from the phone to the worker's offer,
across processes and Kafka.

Off, nothing of OpenTelemetry is imported and every call is a no-op. Each runtime has a tracer
provider of its own (never the process-global one), exporting over OTLP/HTTP in batches; a
collector that is away costs dropped spans and a logged warning, never a request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app.platform.settings import TracingSettings

_traceparent: ContextVar[str | None] = ContextVar("gridflow_traceparent", default=None)


def traceparent() -> str | None:
    """The W3C traceparent of the span this code runs in (None when not traced): what an
    envelope written now carries to the dispatcher."""
    return _traceparent.get()


class Tracing:
    def __init__(self, settings: TracingSettings) -> None:
        self.enabled = settings.enabled
        self._tracer: Any = None
        self._provider: Any = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("gridflow")

    def export_to(self, exporter: Any) -> None:
        """Also hand every finished span to `exporter`, at once (tests, a local debugger)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        self._provider.add_span_processor(SimpleSpanProcessor(exporter))

    @contextmanager
    def server(self, method: str, headers: Sequence[tuple[bytes, bytes]]) -> Iterator[Any]:
        """A server span for one request, child of the caller's traceparent if it sent one.
        Yields the span (None when off) so the caller can name it once the route is known."""
        if not self.enabled:
            yield None
            return
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        parent = _propagator().extract(carrier)
        with (
            self._tracer.start_as_current_span(
                method, context=parent, kind=SpanKind.SERVER, attributes={"http.method": method}
            ) as span,
            _carried(span),
        ):
            yield span

    @contextmanager
    def consumer(self, name: str, parents: Sequence[str | None]) -> Iterator[Any]:
        """A consumer span for applying messages that carried `parents` (traceparents): the
        child of the only one, or linked to each of several."""
        if not self.enabled:
            yield None
            return
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind

        contexts = []
        for value in dict.fromkeys(p for p in parents if p):
            span_context = trace.get_current_span(
                _propagator().extract({"traceparent": value})
            ).get_span_context()
            if span_context.is_valid:
                contexts.append(span_context)
        parent = (
            trace.set_span_in_context(trace.NonRecordingSpan(contexts[0]))
            if len(contexts) == 1
            else None
        )
        with (
            self._tracer.start_as_current_span(
                name,
                context=parent,
                kind=SpanKind.CONSUMER,
                links=[Link(c) for c in contexts] if len(contexts) > 1 else (),
                attributes={"messaging.batch.message_count": len(parents)},
            ) as span,
            _carried(span),
        ):
            yield span

    def shutdown(self) -> None:
        """Export what is buffered and stop (a process's clean stop)."""
        if self._provider is not None:
            self._provider.shutdown()


@contextmanager
def _carried(span: Any) -> Iterator[None]:
    """`span`'s traceparent is what envelopes written inside the block carry."""
    token = _traceparent.set(_format(span))
    try:
        yield
    finally:
        _traceparent.reset(token)


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _format(span: Any) -> str | None:
    c = span.get_span_context()
    if not c.is_valid:
        return None
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"
