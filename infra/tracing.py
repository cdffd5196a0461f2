"""OpenTelemetry traces: ingress → Kafka → router → provider attempt, one trace per request, joined through
the W3C `traceparent` the request event carries in its Kafka headers.

Off by default (the API's no-op tracer: no cost on the hot path). With `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans go to that OTLP/HTTP collector in batches; the
standard `OTEL_*` variables (service name, batch delay, sampling) apply.
"""

from __future__ import annotations

import os

from opentelemetry import context, trace
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("kafka-ai-gateway")


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


def parent(traceparent: str | None) -> context.Context | None:
    """The context a W3C traceparent names (a span of the ingress, or of the caller)."""
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None


def traceparent(span: Span) -> str | None:
    """A span's W3C traceparent, to travel in Kafka headers; None for a no-op span."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
