"""Streaming through Kafka: OpenAI's chunk format and the native SSE format, failover before the first
token only, errors after it, and a client that leaves."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import GATEWAY_KEY, Gateway
from tests.kafka_events import read_events

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"]}}}


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


def native_events(gateway: Gateway, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A plain SSE client: `event:` and `data:` lines, events separated by a blank line."""
    events, name = [], None
    with httpx.stream("POST", gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                      json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, orjson.loads(line[6:])))
    return events


def test_openai_sdk_streams_the_answer_with_a_usage_chunk(gateway: Gateway) -> None:
    chunks = list(sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True}))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the mock! You said: stream me"
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


def test_openai_sdk_streams_tool_call_deltas(gateway: Gateway) -> None:
    chunks = list(sdk(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER], stream=True))

    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert "".join(call.function.arguments or "" for call in calls) == '{"city":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_native_stream_events(gateway: Gateway) -> None:
    events = native_events(gateway, {"model": "gpt-4o", "messages": [{"role": "user", "content": "native"}]})

    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "end" and set(names[1:-1]) == {"delta"}
    start, end = events[0][1], events[-1][1]
    assert (start["model"], start["provider"]) == ("gpt-4o", "openai")
    assert "".join(data["content"] for name, data in events if name == "delta") == \
        "Hello from the mock! You said: native"
    assert end["id"] == start["id"]
    assert end["finish_reason"] == "stop"
    assert end["usage"]["completion_tokens"] == 7 and end["usage"]["cost_usd"] > 0
    assert 0 < end["ttft_ms"] <= end["latency_ms"]
    # On Kafka: the chunks in order, then the full text recorded once in the completion event.
    replies = [r for r in read_events(gateway.bootstrap, gateway.topics.replies) if r[1]["request_id"] == end["id"]]
    assert [name for name, _ in replies][-1] == "ResponseCompleted"
    assert [r["seq"] for name, r in replies if name == "ResponseChunk"] == list(range(len(replies) - 1))
    assert replies[-1][1]["content"] == "Hello from the mock! You said: native"
    assert replies[-1][1]["ttft_ms"] == end["ttft_ms"]


def test_failover_happens_before_the_first_token(gateway: Gateway) -> None:
    events = native_events(gateway, {"model": "flaky-500", "fallback": ["gpt-4o-mini"],
                                     "messages": [{"role": "user", "content": "fail over"}]})

    assert events[0] == ("start", {"id": events[0][1]["id"], "model": "gpt-4o-mini", "provider": "openai"})
    attempts = gateway.events(gateway.topics.attempts, events[0][1]["id"], expect=3)
    assert [a["status"] for a in sorted(attempts, key=lambda a: a["attempt_no"])] == [500, 500, 200]


def test_every_model_failing_before_the_first_token_is_a_plain_http_error(gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(gateway).chat.completions.create(model="flaky-500", messages=[{"role": "user", "content": "x"}],
                                             stream=True)

    assert raised.value.status_code == 502


def test_an_upstream_error_after_the_first_token_ends_the_stream_with_an_error(gateway: Gateway) -> None:
    events = native_events(gateway, {"model": "cut-stream", "fallback": ["gpt-4o"],
                                     "messages": [{"role": "user", "content": "one two three four five"}]})

    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "error" and set(names[1:-1]) == {"delta"}
    assert "".join(data["content"] for name, data in events if name == "delta") == "Hello from the "  # 3 tokens
    assert events[-1][1]["error"]["code"] == "upstream_unavailable"
    usage = gateway.events(gateway.topics.usage, events[0][1]["id"])[0]
    assert (usage["status"], usage["attempts"]) == ("error", 1)  # no failover once tokens went out
    assert usage["completion_tokens"] == 3  # no count from the provider: its 3 text events, not our chunks

    with pytest.raises(openai.APIError):
        for _ in sdk(gateway).chat.completions.create(model="cut-stream", stream=True,
                                                      messages=[{"role": "user", "content": "x y z w"}]):
            pass


def test_a_client_that_leaves_stops_the_upstream_within_a_second(gateway: Gateway) -> None:
    with httpx.stream("POST", gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                      json={"model": "long-stream", "stream": True,
                            "messages": [{"role": "user", "content": "talk a lot"}]}) as response:
        lines = response.iter_lines()
        request_id = orjson.loads(next(line for line in lines if line.startswith("data: "))[6:])["id"]
        for _ in range(10):
            next(lines)
        left_at_ms = time.time() * 1000

    usage = gateway.events(gateway.topics.usage, request_id, timeout_s=15)[0]

    assert usage["status"] == "error" and usage["error_code"] == "client_disconnected"
    assert 0 < usage["completion_tokens"] < 300  # what was generated before the cut, not the whole answer
    assert usage["recorded_at_ms"] - left_at_ms < 1000
    assert usage["ttft_ms"] is not None
    attempt = gateway.events(gateway.topics.attempts, request_id)[0]
    assert (attempt["outcome"], attempt["error_kind"]) == ("error", "cancelled")


def test_a_cut_stream_bills_the_prompt_the_provider_reported_and_the_text_generated(
        providers_gateway: Gateway) -> None:
    from processors.catalog import cost_usd, load_catalog

    events = native_events(providers_gateway, {"model": "claude-opus-4-20250514",
                                               "messages": [{"role": "user", "content": "one two three"}]})

    assert events[-1][0] == "error"
    usage = providers_gateway.events(providers_gateway.topics.usage, events[0][1]["id"])[0]
    assert usage["prompt_tokens"] > 0  # Anthropic's message_start counted the prompt before the cut
    assert usage["completion_tokens"] == 3  # "Hello from the ": three text deltas
    opus = load_catalog().models["claude-opus-4-20250514"]
    assert usage["cost_usd"] > 0
    assert usage["cost_usd"] == pytest.approx(cost_usd(opus, usage["prompt_tokens"], 3))
