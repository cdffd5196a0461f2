"""Property-based fuzzing of every public endpoint from the gateway's own OpenAPI description
(schemathesis, against the running ingress, through the real broker): whatever the body, no answer is
a 5xx, and every answer fits the documented status codes, content types and schemas."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Gateway

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_no_input_makes_the_gateway_fail_or_break_its_contract(gateway: Gateway) -> None:
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    headers = {**gateway.headers(), "x-gateway-timeout-ms": "5000"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/gateway/chat", "/v1/chat/completions", "/v1/embeddings",
                                              "/v1/images/generations", "/v1/models", "/health", "/ready"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same examples on every run: CI stays reproducible
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

        fuzz()
