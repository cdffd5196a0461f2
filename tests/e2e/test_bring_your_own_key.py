"""A caller may bring its own provider key for one request: used for that call, never in the clear on Kafka."""

from __future__ import annotations

import httpx

from tests.conftest import MOCK_OPENAI_KEY, Gateway
from tests.kafka_events import read_events

BODY = {"model": "byok-gpt", "messages": [{"role": "user", "content": "my own key"}]}


def chat(gateway: Gateway, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=BODY, headers={**gateway.headers(), **headers},
                      timeout=30)


def test_the_callers_key_serves_a_provider_the_gateway_has_no_key_for(providers_gateway: Gateway) -> None:
    assert chat(providers_gateway, {}).json()["error"]["code"] == "provider_not_configured"

    response = chat(providers_gateway, {"x-provider-key-openai-byok": MOCK_OPENAI_KEY})

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the mock! You said: my own key"
    assert providers_gateway.events(providers_gateway.topics.usage, response.headers["x-request-id"])  # audits are in
    for topic in (providers_gateway.topics.requests, providers_gateway.topics.attempts,
                  providers_gateway.topics.replies, providers_gateway.topics.usage):
        assert MOCK_OPENAI_KEY not in repr(read_events(providers_gateway.bootstrap, topic))


def test_a_wrong_caller_key_is_an_upstream_auth_error(providers_gateway: Gateway) -> None:
    response = chat(providers_gateway, {"x-provider-key-openai-byok": "sk-not-valid"})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert "sk-not-valid" not in response.text


def test_a_key_for_an_unknown_provider_is_refused(providers_gateway: Gateway) -> None:
    response = chat(providers_gateway, {"x-provider-key-nobody": "sk-x"})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "unknown_provider")


def test_a_gateway_without_a_secret_refuses_caller_keys(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/chat/completions",
                          headers={**gateway.headers(), "x-provider-key-openai": "k"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "provider_keys_disabled")
