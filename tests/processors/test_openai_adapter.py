"""The OpenAI adapter's pure translations, checked against the examples of OpenAI's API reference."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from processors.providers import openai
from processors.providers.base import Unsupported, Upstream

FIXTURES = Path(__file__).with_name("fixtures")
REQUEST = {
    "model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief.", "name": None},
                                    {"role": "user", "content": "Hello!", "name": "ana"}],
    "max_tokens": 100, "temperature": 0.2, "top_p": None, "stop": ["END"], "seed": None, "user": None,
}
UPSTREAM = Upstream("openai", "https://api.openai.com/v1", "gpt-4o-2024-08-06", "sk-live")


def test_a_unified_request_becomes_a_chat_completions_call() -> None:
    call = openai.build_chat(REQUEST, UPSTREAM)

    assert (call.method, call.url) == ("POST", "https://api.openai.com/v1/chat/completions")
    assert call.headers["authorization"] == "Bearer sk-live"
    assert orjson.loads(call.body) == {
        "model": "gpt-4o-2024-08-06",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!", "name": "ana"}],
        "max_tokens": 100, "temperature": 0.2, "stop": ["END"],
    }


def test_a_keyless_server_gets_no_authorization_header() -> None:
    keyless = Upstream("local", "http://127.0.0.1:18181/v1", "smollm2")
    assert "authorization" not in openai.build_chat(REQUEST, keyless).headers


def test_reasoning_models_take_max_completion_tokens_and_refuse_temperature() -> None:
    o3 = Upstream("openai", "https://api.openai.com/v1", "o3", "sk", capabilities=("chat", "reasoning"))

    body = orjson.loads(openai.build_chat({**REQUEST, "temperature": None}, o3).body)
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    with pytest.raises(Unsupported, match="'temperature'"):
        openai.build_chat(REQUEST, o3)


def test_the_reference_response_becomes_a_unified_result() -> None:
    result = openai.parse_chat(json.loads((FIXTURES / "openai_chat_completion.json").read_text()))

    assert result.content == "Hello! How can I assist you today?"
    assert (result.prompt_tokens, result.completion_tokens, result.cached_tokens) == (19, 10, 0)
    assert result.finish_reason == "stop"
    assert result.upstream_id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


def test_errors_are_classified_by_status_with_the_provider_message() -> None:
    body = json.dumps({"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}}).encode()

    limited = openai.parse_error(429, body, {"retry-after": "2"})
    auth = openai.parse_error(401, b'{"error": {"message": "Incorrect API key provided"}}', {})
    broken = openai.parse_error(502, b"<html>Bad Gateway</html>", {"retry-after-ms": "250"})

    assert (limited.kind, limited.retryable, limited.retry_after_s, limited.message) == \
        ("rate_limited", True, 2.0, "Rate limit reached")
    assert (auth.kind, auth.retryable) == ("upstream_auth", False)
    assert (broken.kind, broken.retryable, broken.retry_after_s) == ("server_error", True, 0.25)
    assert "Bad Gateway" in broken.message
