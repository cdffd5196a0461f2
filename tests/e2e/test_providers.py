"""One OpenAI-format request, every provider behind it: the same tool call and the same answers come
back in the same shape, through Kafka, whichever provider served them."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from processors.catalog import load_catalog
from tests.conftest import GATEWAY_KEY, Gateway

PIXEL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n-a-tiny-image").decode()
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# One model per provider (and route kind) of the product page.
MODELS = ["gpt-4o-mini", "azure-gpt-4o", "claude-3-5-haiku-20241022", "gemini-flash", "bedrock-claude-3-5-sonnet"]
PROVIDERS = {"gpt-4o-mini": "openai", "azure-gpt-4o": "azure", "claude-3-5-haiku-20241022": "anthropic",
             "gemini-flash": "google", "bedrock-claude-3-5-sonnet": "bedrock"}


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_call_comes_back_in_the_same_shape_and_its_result_continues_the_conversation(
    providers_gateway: Gateway, model: str
) -> None:
    question = [{"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": [{"type": "text", "text": "What is the weather where this photo is?"},
                                             {"type": "image_url", "image_url": {"url": PIXEL}}]}]

    first = sdk(providers_gateway).chat.completions.with_raw_response.create(
        model=model, messages=question, tools=[WEATHER], max_tokens=200)
    completion = first.parse()

    assert first.headers["x-gateway-provider"] == PROVIDERS[model]
    assert completion.choices[0].finish_reason == "tool_calls"
    call = completion.choices[0].message.tool_calls[0]
    assert (call.type, call.function.name, call.function.arguments) == ("function", "get_weather", '{"city":"Paris"}')
    assert call.id

    follow_up = sdk(providers_gateway).chat.completions.create(model=model, max_tokens=200, tools=[WEATHER], messages=[
        *question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ])

    assert follow_up.choices[0].message.content == "The tool said: 18C and sunny"
    assert follow_up.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_an_image_reaches_every_provider(providers_gateway: Gateway, model: str) -> None:
    completion = sdk(providers_gateway).chat.completions.create(model=model, max_tokens=100, messages=[
        {"role": "user", "content": [{"type": "text", "text": "Describe"},
                                     {"type": "image_url", "image_url": {"url": PIXEL}}]}])

    assert completion.choices[0].message.content == "Hello from the mock! You said: Describe I see 1 image(s)."
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens == 11


def test_failover_across_providers_answers_and_prices_from_the_provider_that_answered(
    providers_gateway: Gateway,
) -> None:
    response = httpx.post(providers_gateway.url + "/v1/gateway/chat", headers=providers_gateway.headers(), timeout=30,
                          json={"model": "gpt-4o", "fallback": ["claude-sonnet-4-20250514", "gemini-pro"],
                                "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 1000})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["provider"]) == ("gemini-pro", "google")
    price = load_catalog().models["gemini-pro"]
    usage = body["usage"]
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * price.input_per_mtok
                                               + usage["completion_tokens"] * price.output_per_mtok) / 1e6)
    attempts = providers_gateway.events(providers_gateway.topics.attempts, body["id"], expect=5)
    assert [(a["provider"], a["status"]) for a in sorted(attempts, key=lambda a: a["attempt_no"])] == [
        ("openai", 500), ("openai", 500), ("anthropic", 529), ("anthropic", 529), ("google", 200)]


@pytest.mark.parametrize(("model", "status", "code", "named"), [
    ("claude-badkey", 502, "upstream_auth_failed", "anthropic-badkey"),
    ("gemini-bad-request", 400, "upstream_bad_request", "google"),
    ("bedrock-throttled", 429, "upstream_rate_limited", "ThrottlingException"),
    ("azure-filtered", 400, "content_filter", "content management policy"),
])
def test_upstream_errors_are_mapped_the_same_way_for_every_provider(
    providers_gateway: Gateway, model: str, status: int, code: str, named: str
) -> None:
    response = httpx.post(providers_gateway.url + "/v1/chat/completions", headers=providers_gateway.headers(),
                          timeout=30, json={"model": model, "messages": [{"role": "user", "content": "x"}]})

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert named in response.json()["error"]["message"]


def test_a_parameter_the_provider_cannot_honour_is_a_400_naming_it(providers_gateway: Gateway) -> None:
    response = httpx.post(providers_gateway.url + "/v1/chat/completions", headers=providers_gateway.headers(),
                          json={"model": "claude-3-5-haiku-20241022", "response_format": {"type": "json_object"},
                                "messages": [{"role": "user", "content": "JSON please"}]})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert "anthropic" in error["message"] and "response_format" in error["message"]


@pytest.mark.parametrize("model", MODELS)
def test_every_provider_streams_in_openais_chunk_format(providers_gateway: Gateway, model: str) -> None:
    chunks = list(sdk(providers_gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream please"}], stream=True, max_tokens=100,
        stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello from the mock! You said: stream please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_every_provider_streams_tool_calls_in_one_shape(providers_gateway: Gateway, model: str) -> None:
    chunks = list(sdk(providers_gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER], stream=True,
        max_tokens=100))

    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert "".join(call.function.arguments or "" for call in calls) == '{"city":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
