"""Bad input gets a 4xx (or 504 for a passed deadline) with an OpenAI-shaped JSON error: never a 500, never a hang."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Gateway

GOOD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize("path", ["/v1/gateway/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(("body", "code", "param"), [
    (b'{"model": "gpt-4o", "messages": [', "invalid_json", None),
    (b'["not", "an", "object"]', "invalid_json", None),
    (b'{"model": "gpt-4o"}', "missing_required_parameter", "messages"),
    (b'{"model": "gpt-4o", "messages": []}', "invalid_value", "messages"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "missing_required_parameter", "model"),
    (b'{"model": 42, "messages": [{"role": "user", "content": "hi"}]}', "invalid_value", "model"),
    (b'{"model": "gpt-4o", "messages": "hi"}', "invalid_value", "messages"),
    (b'{"model": "gpt-4o", "messages": [{"role": "wizard", "content": "hi"}]}', "invalid_value", "messages.0.role"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user"}]}', "invalid_value", "messages.0"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}',
     "invalid_value", "max_tokens"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}',
     "invalid_value", "temperature"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2147483648}',
     "invalid_value", "max_tokens"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "seed": 9223372036854775808}',
     "invalid_value", "seed"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"50256": -100}}',
     "unsupported_parameter", "logit_bias"),
    (b'{"model": "gpt-4o", "messages": [{"role": "tool", "content": "42"}]}', "invalid_value", "messages.0"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}',
     "invalid_value", "messages.0.content"),
])
def test_malformed_bodies_get_400_naming_the_problem(
    gateway: Gateway, path: str, body: bytes, code: str, param: str | None
) -> None:
    response = httpx.post(gateway.url + path, content=body, headers=gateway.headers())

    error = assert_openai_error(response, 400, code)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_model_gets_404(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(),
                          json={**GOOD, "model": "gpt-4o", "fallback": ["no-such-model"]})

    error = assert_openai_error(response, 404, "model_not_found")
    assert "no-such-model" in error["message"]


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer sk-not-a-key"}, "invalid_api_key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_api_key"),
    ({"Authorization": "Bearer"}, "invalid_api_key"),
])
def test_missing_or_wrong_key_gets_401(gateway: Gateway, headers: dict[str, str], code: str) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions", json=GOOD, headers=headers)

    assert assert_openai_error(response, 401, code)["type"] == "authentication_error"


def test_body_over_the_size_limit_gets_413(gateway: Gateway) -> None:
    huge = {**GOOD, "messages": [{"role": "user", "content": "x" * 70_000}]}

    response = httpx.post(gateway.url + "/v1/chat/completions", json=huge, headers=gateway.headers())

    assert_openai_error(response, 413, "request_too_large")


def test_chunked_body_over_the_size_limit_gets_413(gateway: Gateway) -> None:
    def chunks():
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}]}'

    response = httpx.post(gateway.url + "/v1/chat/completions", content=chunks(), headers=gateway.headers())

    assert_openai_error(response, 413, "request_too_large")


def test_a_deadline_that_passes_gets_504_in_time(gateway: Gateway) -> None:
    started = time.monotonic()
    response = httpx.post(gateway.url + "/v1/gateway/chat", json={**GOOD, "model": "slow"},
                          headers={**gateway.headers(), "x-gateway-timeout-ms": "500"}, timeout=10)

    assert_openai_error(response, 504, "deadline_exceeded")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("value", ["soon", "-5", "0", "99999999"])
def test_an_invalid_timeout_header_gets_400(gateway: Gateway, value: str) -> None:
    response = httpx.post(gateway.url + "/v1/gateway/chat", json=GOOD,
                          headers={**gateway.headers(), "x-gateway-timeout-ms": value})

    assert_openai_error(response, 400, "invalid_timeout")


def test_unknown_route_gets_an_openai_shaped_404(gateway: Gateway) -> None:
    assert_openai_error(httpx.get(gateway.url + "/v1/nothing-here"), 404, "not_found")


def test_a_number_json_can_hold_but_the_event_cannot_is_a_400_naming_it(gateway: Gateway) -> None:
    body = (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
            b'"function": {"name": "f", "parameters": {"x": -38386236193825870774936679743488}}}]}')
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers=gateway.headers())

    assert assert_openai_error(response, 400, "invalid_value")["param"] == "tools.0.function.parameters"
