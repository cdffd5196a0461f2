"""Prometheus metrics of every process (prometheus-client, its naming conventions).

The ingress and `gateway analytics` serve `/metrics` on their HTTP port; a router serves it on
`--metrics-port`. Under `gateway up` every process writes to one `PROMETHEUS_MULTIPROC_DIR`, and any
ingress's `/metrics` shows the whole host (prometheus-client's multiprocess mode), so one scrape per
host sees the ingress processes sharing the port, the routers and the analytics process.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter("gateway_http_requests", "HTTP requests answered by the ingress", ["route", "status"])
HTTP_SECONDS = Histogram("gateway_http_request_duration_seconds", "Time to answer (to the first byte of a stream)",
                         ["route"], buckets=_SECONDS)
REQUESTS = Counter("gateway_requests", "Requests finished by a router", ["model", "provider", "status"])
REQUEST_SECONDS = Histogram("gateway_request_duration_seconds", "From receipt to the answer", ["model", "provider"],
                            buckets=_SECONDS)
TOKENS = Counter("gateway_tokens", "Tokens used", ["model", "provider", "kind"])
COST = Counter("gateway_cost_usd", "List-price cost", ["model", "provider"])
ATTEMPTS = Counter("gateway_upstream_attempts", "Provider calls", ["provider", "model", "outcome", "error_kind"])
IN_FLIGHT = Gauge("gateway_router_in_flight", "Requests a router is working on", multiprocess_mode="livesum")
LAG = Gauge("gateway_consumer_lag", "Records not yet read, per consumer group and partition",
            ["group", "topic", "partition"], multiprocess_mode="livemax")
ANALYTICS_EVENTS = Counter("gateway_analytics_events", "Events the analytics sink handled", ["result"])


def exposition() -> tuple[bytes, str]:
    """The metrics text: this host's processes in multiprocess mode, else this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def install(app: Any) -> None:
    """`GET /metrics` on a FastAPI app (the ingress, the analytics process)."""
    from starlette.responses import Response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)


def serve(port: int) -> None:
    """A /metrics endpoint of its own, for a process with no HTTP server (a router)."""
    start_http_server(port)


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """A metric's series for these label values, looked up once (labels() costs microseconds a call, and
    the hot paths count several series a request; the label values are bounded: routes, models, statuses)."""
    return metric.labels(*labels)


def record_usage(usage: dict[str, Any]) -> None:
    """What a router counts for a finished request (the same numbers its UsageRecorded carries)."""
    model, provider = usage["model"], usage["provider"] or "none"
    child(REQUESTS, model, provider, usage["status"]).inc()
    child(REQUEST_SECONDS, model, provider).observe(usage["latency_ms"] / 1000)
    for kind in ("prompt", "completion", "cached"):
        if usage[f"{kind}_tokens"]:
            child(TOKENS, model, provider, kind).inc(usage[f"{kind}_tokens"])
    if usage["cost_usd"]:
        child(COST, model, provider).inc(usage["cost_usd"])


def record_attempt(attempt: dict[str, Any]) -> None:
    child(ATTEMPTS, attempt["provider"], attempt["model"], attempt["outcome"], attempt["error_kind"] or "").inc()
