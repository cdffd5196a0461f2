"""Retries and fallback: a failing first model, and the answer from the next one, with one attempt event per try."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Gateway


def chat(gateway: Gateway, model: str, fallback: list[str]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30, json={
        "model": model, "fallback": fallback, "messages": [{"role": "user", "content": "fail over"}],
    })


def attempt_trail(gateway: Gateway, request_id: str, expect: int) -> list[tuple[str, str, int | None, str | None]]:
    attempts = sorted(gateway.events(gateway.topics.attempts, request_id, expect), key=lambda a: a["attempt_no"])
    return [(a["model"], a["outcome"], a["status"], a["error_kind"]) for a in attempts]


def test_upstream_500_is_retried_then_fails_over_to_the_next_model(gateway: Gateway) -> None:
    response = chat(gateway, "flaky-500", ["gpt-4o-mini"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["usage"]["cost_usd"] == pytest.approx((body["usage"]["prompt_tokens"] * 0.15
                                                       + body["usage"]["completion_tokens"] * 0.60) / 1e6)
    assert attempt_trail(gateway, body["id"], 3) == [
        ("flaky-500", "error", 500, "server_error"),
        ("flaky-500", "error", 500, "server_error"),
        ("gpt-4o-mini", "ok", 200, None),
    ]
    assert response.headers["x-gateway-attempts"] == "3"


def test_upstream_429_with_a_long_retry_after_fails_over_at_once(gateway: Gateway) -> None:
    response = chat(gateway, "flaky-429", ["gpt-4o"])

    assert response.status_code == 200, response.text
    assert response.json()["model"] == "gpt-4o"
    # retry-after: 30 is longer than the configured 1 s: no second try on the rate-limited model.
    assert attempt_trail(gateway, response.json()["id"], 2) == [
        ("flaky-429", "error", 429, "rate_limited"),
        ("gpt-4o", "ok", 200, None),
    ]


def test_refused_connection_fails_over_to_the_next_model(gateway: Gateway) -> None:
    response = chat(gateway, "refused", ["gpt-4o"])

    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "openai"
    assert attempt_trail(gateway, response.json()["id"], 3) == [
        ("refused", "error", None, "connection"),
        ("refused", "error", None, "connection"),
        ("gpt-4o", "ok", 200, None),
    ]


def test_every_model_failing_answers_502_naming_the_provider(gateway: Gateway) -> None:
    response = chat(gateway, "flaky-500", ["refused"])

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert error["code"] == "upstream_unavailable"
    assert "refusing" in error["message"]
    # The client does not learn the gateway's network; operators find it in AttemptFinished.
    assert "127.0.0.1" not in error["message"] and "<upstream>" in error["message"]
    attempts = gateway.events(gateway.topics.attempts, response.headers["x-request-id"], expect=4)
    assert any("127.0.0.1" in (a["error_message"] or "") for a in attempts)


def test_upstream_400_is_not_retried_and_reaches_the_client_as_400(gateway: Gateway) -> None:
    response = chat(gateway, "bad-params", ["gpt-4o"])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_bad_request"
    assert "temperature" in response.json()["error"]["message"]
    usage = gateway.events(gateway.topics.usage, response.headers["x-request-id"])
    assert usage[0]["status"] == "error"
    assert attempt_trail(gateway, response.headers["x-request-id"], 1) == [
        ("bad-params", "error", 400, "bad_request"),
    ]


def test_a_first_byte_slower_than_the_providers_limit_fails_over(gateway: Gateway) -> None:
    started = time.monotonic()
    response = chat(gateway, "slow-first-byte", ["gpt-4o"])

    assert response.status_code == 200, response.text
    assert response.json()["model"] == "gpt-4o"
    assert time.monotonic() - started < 1.5  # two 0.3 s tries, not the upstream's 2 s stall
    assert attempt_trail(gateway, response.json()["id"], 3) == [
        ("slow-first-byte", "error", None, "timeout"),
        ("slow-first-byte", "error", None, "timeout"),
        ("gpt-4o", "ok", 200, None),
    ]
