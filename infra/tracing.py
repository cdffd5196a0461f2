"""OpenTelemetry traces: ingress → Kafka → router → provider attempt, one trace per request, joined through
the W3C `traceparent` the request event carries in its Kafka headers.

Off by default: `span` is then one shared null context (even the API's no-op tracer attaches and detaches a
context per span, which py-spy put at 4 % of the router's CPU; a generator context manager made per span was
still 1 %). With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans go to that
OTLP/HTTP collector in batches; the standard `OTEL_*` variables (service name, batch delay, sampling) apply.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("kafka-ai-gateway")
_enabled = False
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable: entering it only returns the span


def configure(service: str) -> None:
    """Export spans when a collector is configured; otherwise leave the no-op tracer."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                       f"gateway-{service}")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    global _enabled
    _enabled = True


def span(name: str, kind: SpanKind, traceparent: str | None = None,
         attributes: dict[str, Any] | None = None) -> contextlib.AbstractContextManager[Span]:
    """A span of the request's trace (child of `traceparent` when given); the invalid span when tracing is off."""
    if not _enabled:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, context=parent(traceparent), kind=kind, attributes=attributes)


def parent(traceparent: str | None) -> context.Context | None:
    """The context a W3C traceparent names (a span of the ingress, or of the caller)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None


def traceparent(span: Span) -> str | None:
    """A span's W3C traceparent, to travel in Kafka headers; None for a no-op span."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
