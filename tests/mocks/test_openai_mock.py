"""The OpenAI mock is faithful: the official SDK, pointed straight at it, works and sees OpenAI's errors."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import MOCK_OPENAI_KEY

MESSAGES = [{"role": "user", "content": "x"}]


def client(base_url: str, key: str = MOCK_OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


def test_sdk_creates_a_chat_completion_on_the_mock(openai_mock: str) -> None:
    completion = client(openai_mock).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "ping"}], max_tokens=20,
    )

    assert completion.choices[0].message.content == "Hello from the mock! You said: ping"
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None


def test_sdk_lists_the_mock_models(openai_mock: str) -> None:
    assert "gpt-4o" in {m.id for m in client(openai_mock).models.list()}


def test_sdk_sees_the_mock_errors_as_openai_errors(openai_mock: str) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        client(openai_mock, "sk-wrong").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert auth.value.code == "invalid_api_key"

    with pytest.raises(openai.RateLimitError) as limited:
        client(openai_mock).chat.completions.create(model="gpt-4o-fail-429", messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "30"
    assert limited.value.code == "rate_limit_exceeded"

    with pytest.raises(openai.InternalServerError):
        client(openai_mock).chat.completions.create(model="gpt-4o-fail-500", messages=MESSAGES)

    with pytest.raises(openai.NotFoundError) as missing:
        client(openai_mock).chat.completions.create(model="missing-model", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
