"""OpenTelemetry: one trace per request across processes, ingress → Kafka → router → provider attempt,
joined through the traceparent in the Kafka headers; received here by a real OTLP/HTTP endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import Gateway, free_port, start_gateway, write_config

SPANS: list[dict[str, Any]] = []


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["content-length"])))
        for resource in request.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    SPANS.append({"service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                                  "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex()})
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture(scope="module")
def traced(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Gateway]:
    collector = ThreadingHTTPServer(("127.0.0.1", free_port()), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    gateway = start_gateway(bootstrap, write_config(tmp_path_factory.mktemp("traced") / "gateway.yaml", openai_mock),
                            logs, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
                                   "OTEL_BSP_SCHEDULE_DELAY": "100"})
    yield gateway
    gateway.stop()
    collector.shutdown()


def test_a_request_is_one_trace_from_the_callers_span_to_the_provider_call(traced: Gateway) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = httpx.post(traced.url + "/v1/gateway/chat", timeout=30,
                          headers={**traced.headers(), "traceparent": f"00-{trace_id}-{caller_span}-01"},
                          json={"model": "flaky-500", "fallback": ["gpt-4o"],
                                "messages": [{"role": "user", "content": "trace me"}]})
    assert response.status_code == 200

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(1 for s in SPANS if s["trace_id"] == trace_id) < 5:
        time.sleep(0.2)
    spans = [s for s in SPANS if s["trace_id"] == trace_id]
    ingress = next(s for s in spans if s["service"] == "gateway-ingress")
    router = next(s for s in spans if s["name"] == "router.handle")
    attempts = [s for s in spans if s["name"].startswith("provider ")]
    assert ingress["parent"] == caller_span and ingress["name"] == "POST /v1/gateway/chat"
    assert router["service"] == "gateway-router" and router["parent"] == ingress["span_id"]
    assert len(attempts) == 3 and {a["parent"] for a in attempts} == {router["span_id"]}  # 2 tries, 1 fallback
    usage = traced.events(traced.topics.usage, response.headers["x-request-id"])
    assert usage
