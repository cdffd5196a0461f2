"""A chat request through the whole path: HTTP -> ingress -> Kafka -> router -> provider -> Kafka -> HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import OTHER_PROJECT_KEY, Gateway

# The quick-start request of the product page.
QUICK_START = {
    "model": "gpt-4o",
    "fallback": ["claude-sonnet-4-20250514", "gemini-pro"],
    "messages": [{"role": "user", "content": "Hello!"}],
    "max_tokens": 1000,
}


def test_quick_start_answers_in_the_product_page_shape_with_its_cost(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/gateway/chat", json=QUICK_START, headers=gateway.headers())

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"id", "model", "provider", "content", "usage", "latency_ms"}
    assert body["model"] == "gpt-4o"
    assert body["provider"] == "openai"
    assert body["content"] == "Hello from the mock! You said: Hello!"
    usage = body["usage"]
    # The mock counts words: prompt "Hello!" -> 1 + 3 per message; the answer has 7 words.
    assert usage == {
        "prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11, "cached_tokens": 0, "reasoning_tokens": 0,
        "cost_usd": pytest.approx(4 * 2.50 / 1e6 + 7 * 10.00 / 1e6),
    }
    assert body["latency_ms"] > 0
    assert response.headers["x-request-id"] == body["id"]


def test_each_request_records_one_attempt_and_one_usage_event(gateway: Gateway) -> None:
    body = httpx.post(gateway.url + "/v1/gateway/chat", json=QUICK_START, headers=gateway.headers()).json()

    attempts = gateway.events(gateway.topics.attempts, body["id"])
    usage = gateway.events(gateway.topics.usage, body["id"])

    assert [(a["attempt_no"], a["outcome"], a["status"], a["model"]) for a in attempts] == [(1, "ok", 200, "gpt-4o")]
    assert len(usage) == 1
    assert usage[0]["event_id"] == body["id"]
    assert usage[0]["project"] == "proj-a"
    assert usage[0]["cost_usd"] == pytest.approx(body["usage"]["cost_usd"])
    assert usage[0]["key_id"].startswith("key_")


def test_the_project_comes_from_the_key(gateway: Gateway) -> None:
    body = httpx.post(gateway.url + "/v1/gateway/chat", json=QUICK_START,
                      headers=gateway.headers(OTHER_PROJECT_KEY)).json()

    assert gateway.events(gateway.topics.usage, body["id"])[0]["project"] == "proj-b"


def test_no_secret_enters_an_event(gateway: Gateway) -> None:
    body = httpx.post(gateway.url + "/v1/gateway/chat", json=QUICK_START, headers=gateway.headers()).json()
    gateway.events(gateway.topics.usage, body["id"])

    from tests.kafka_events import read_events

    for topic in (gateway.topics.requests, gateway.topics.replies, gateway.topics.attempts, gateway.topics.usage):
        text = repr(read_events(gateway.bootstrap, topic))
        assert "sk-test-gateway-key" not in text
        assert "sk-mock-openai" not in text


def test_openai_sdk_chat_completion(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test-gateway-key", max_retries=0)

    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
    )

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the mock! You said: Hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == completion.usage.prompt_tokens + 7


def test_openai_sdk_lists_the_models_that_can_be_served(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test-gateway-key", max_retries=0)

    ids = {model.id for model in client.models.list()}

    assert {"gpt-4o", "gpt-4o-mini", "o1", "o3", "flaky-500"} <= ids
    assert "claude-sonnet-4-20250514" not in ids  # no Anthropic provider is configured here


def test_openai_sdk_sees_a_bad_key_as_authentication_error(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong-key", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_openai_sdk_sees_an_unknown_model_as_not_found(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test-gateway-key", max_retries=0)

    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-9-ultra", messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.code == "model_not_found"
    assert "gpt-9-ultra" in raised.value.message


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/ready").json() == {"ready": True, "kafka": True, "replies": True,
                                                                "router": True, "reply_partition": 0}


def test_a_model_whose_provider_has_no_key_names_the_variable_and_what_answers(providers_gateway: Gateway) -> None:
    response = httpx.post(providers_gateway.url + "/v1/gateway/chat", headers=providers_gateway.headers(),
                          json={"model": "byok-gpt", "messages": [{"role": "user", "content": "Hello!"}]}, timeout=30)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "provider_not_configured"
    assert "enabled by setting TEST_KEY_NOBODY_SETS" in error["message"]
    assert "models that answer now: " in error["message"]


def test_the_ingress_serves_prometheus_metrics(gateway: Gateway) -> None:
    httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
               json={"model": "gpt-4o", "messages": [{"role": "user", "content": "count me"}]})

    exposition = httpx.get(gateway.url + "/metrics").text
    assert 'gateway_http_requests_total{route="/v1/gateway/chat",status="200"}' in exposition
    assert 'gateway_http_request_duration_seconds_bucket{le="0.005",route="/v1/gateway/chat"}' in exposition
