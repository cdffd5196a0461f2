"""The self-hosted provider: a real SmolLM2-135M behind llama.cpp's OpenAI-compatible server, through Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from infra import local_model
from tests.conftest import GATEWAY_KEY, Gateway, free_port, start_gateway, stop_process, write_config


@pytest.fixture(scope="module")
def local_gateway(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Gateway]:
    port = free_port()
    server = local_model.start(port)
    try:  # the model server is stopped even when the gateway does not start
        config = write_config(
            tmp_path_factory.mktemp("local") / "gateway.yaml", openai_mock,
            extra_providers={"local": {"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{port}/v1"}},
            extra_models={"smollm2-135m": {"provider": "local", "upstream_model": local_model.ALIAS}},
        )
        gateway = start_gateway(bootstrap, config, logs)
        yield gateway
        gateway.stop()
    finally:
        stop_process(server)


def test_the_local_model_answers_with_real_text_and_token_counts(local_gateway: Gateway) -> None:
    response = httpx.post(local_gateway.url + "/v1/gateway/chat", headers=local_gateway.headers(), timeout=120, json={
        "model": "smollm2-135m", "max_tokens": 24,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    })

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local"
    assert body["content"].strip()
    assert "Hello from the mock" not in body["content"]
    assert body["usage"]["prompt_tokens"] > 5  # the chat template wraps the question
    assert 0 < body["usage"]["completion_tokens"] <= 24
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["usage"]["cost_usd"] == 0.0


def test_the_openai_sdk_gets_the_local_model_through_the_gateway(local_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=local_gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=120)

    completion = client.chat.completions.create(
        model="smollm2-135m", max_tokens=16, messages=[{"role": "user", "content": "Say hello."}],
    )

    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_the_local_model_streams_real_tokens_through_kafka(local_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=local_gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=120)

    started = time.monotonic()
    arrivals, text = [], []
    for chunk in client.chat.completions.create(model="smollm2-135m", max_tokens=32, stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "Tell me about the sea."}]):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            text.append(chunk.choices[0].delta.content)
        usage = chunk.usage

    assert len(text) > 5 and "".join(text).strip()
    assert arrivals[-1] - arrivals[0] > 0.05  # tokens arrive as the model makes them, not all at once
    assert usage is not None and 0 < usage.completion_tokens <= 32
