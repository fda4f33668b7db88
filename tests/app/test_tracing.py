"""OpenTelemetry traces (off by default): a report's trace runs from the request that sent it,
through the outbox and the bus (Kafka when the suite runs on it), to the dispatcher's span."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from app.models import OutboxMessage
from app.platform.settings import TracingSettings
from app.platform.tracing import Tracing
from tests.conftest import Configured
from tests.harness import CITY_POINT, Harness

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


async def test_a_report_is_one_trace_from_the_request_to_the_dispatcher(
    configured: Configured,
) -> None:
    async with configured(tracing={"enabled": True, "otlp_endpoint": None}) as h:
        spans = InMemorySpanExporter()
        h.runtime.tracing.export_to(spans)
        body = {"category": "garbage_overflow", "description": "满了", "location": CITY_POINT}
        headers = {**h.auth("resident", "alice"), "traceparent": f"00-{TRACE}-{CALLER}-01"}
        r = await h.client.post("/v1/reports", json=body, headers=headers)
        assert r.status_code == 201, r.text
        await h.case_of(r.json()["id"])

        async def dispatched() -> list[Any] | None:
            found = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
            return found or None

        (consumer, *_) = await h.eventually(dispatched)
    server = next(s for s in spans.get_finished_spans() if s.name == "POST /v1/reports")
    assert server.kind is SpanKind.SERVER and f"{server.context.trace_id:032x}" == TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER
    assert server.attributes["http.status_code"] == 201
    assert server.attributes["gridflow.request_id"] == r.headers["x-request-id"]
    # The dispatcher's span is the request's child: the same trace, across the bus.
    assert consumer.context.trace_id == server.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == server.context.span_id


async def test_off_by_default_nothing_is_carried(h: Harness) -> None:
    assert not h.runtime.tracing.enabled
    await h.report("alice")
    async with h.runtime.db.reader() as session:
        payloads = list(await session.scalars(select(OutboxMessage.payload)))
    assert payloads and all(p.get("trace") is None for p in payloads)


def test_a_batch_of_several_requests_links_to_each() -> None:
    tracing = Tracing(TracingSettings(enabled=True, otlp_endpoint=None))
    spans = InMemorySpanExporter()
    tracing.export_to(spans)
    parents = [f"00-{i:032x}-{i:016x}-01" for i in (1, 2)]
    with tracing.consumer("dispatch batch", [*parents, None, parents[0]]):
        pass
    (batch,) = spans.get_finished_spans()
    assert batch.parent is None  # several traces: its own, linked to each
    assert sorted(link.context.trace_id for link in batch.links) == [1, 2]
    assert batch.attributes["messaging.batch.message_count"] == 4


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A stand-in OTLP/HTTP receiver on 127.0.0.1 keeping each request (path, type, body)."""
    received: list[tuple[str, str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            received.append((self.path, self.headers["Content-Type"], self.rfile.read(size)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_go_out_over_otlp_http(
    collector: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    endpoint, received = collector
    tracing = Tracing(TracingSettings(enabled=True, otlp_endpoint=endpoint, service_name="gf-t"))
    with tracing.server("GET", [(b"traceparent", f"00-{TRACE}-{CALLER}-01".encode())]) as span:
        span.update_name("GET /v1/cases")
    tracing.shutdown()  # exports what the batch processor holds
    ((path, kind, body),) = received
    assert path == "/v1/traces" and kind == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "gf-t"
    (sent,) = resource.scope_spans[0].spans
    assert sent.name == "GET /v1/cases" and sent.trace_id.hex() == TRACE
