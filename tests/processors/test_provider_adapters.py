"""Anthropic, Gemini, Bedrock and Azure adapters: pure translations, checked against the examples of
each provider's published API reference."""

from __future__ import annotations

import orjson
import pytest

from processors.providers import anthropic, azure, bedrock, gemini
from processors.providers.base import Unsupported, Upstream

TOOL = {"name": "get_weather", "description": "Weather", "strict": None,
        "parameters_json": '{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}'}
CALL = {"id": "call_1", "name": "get_weather", "arguments": '{"location":"Paris"}'}


def message(role: str, content: str | None = None, **extra: object) -> dict[str, object]:
    return {"role": role, "content": content, "name": None, "parts": [], "tool_calls": [], "tool_call_id": None,
            **extra}


def request(**extra: object) -> dict[str, object]:
    return {"messages": [message("system", "Be brief."), message("user", "Weather in Paris?"),
                         message("assistant", None, tool_calls=[CALL]),
                         message("tool", '{"temp": 18}', tool_call_id="call_1")],
            "max_tokens": None, "temperature": 0.5, "top_p": None, "stop": [], "seed": None, "user": None,
            "tools": [TOOL], "tool_choice": "auto", "parallel_tool_calls": None, "response_format_json": None,
            **extra}


def test_anthropic_lifts_the_system_prompt_and_speaks_content_blocks() -> None:
    call = anthropic.build_chat(request(), Upstream("anthropic", "https://api.anthropic.com", "claude-x", "sk-ant"))
    body = orjson.loads(call.body)

    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers["x-api-key"] == "sk-ant" and call.headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS  # required by Anthropic, optional for callers
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                                           "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp": 18}'}]},
    ]
    assert body["tools"][0]["input_schema"]["required"] == ["location"]
    assert body["tool_choice"] == {"type": "auto"}


def test_anthropic_reference_tool_use_response() -> None:
    result = anthropic.parse_chat({
        "id": "msg_01Aq9w938a90dw8q", "model": "claude-3-5-sonnet-20241022", "stop_reason": "tool_use",
        "role": "assistant", "type": "message",
        "content": [{"type": "text", "text": "<thinking>I need to use get_weather</thinking>"},
                    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                     "input": {"location": "San Francisco, CA", "unit": "celsius"}}],
        "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 0},
    })

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == ({"id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                                  "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},)
    assert (result.prompt_tokens, result.completion_tokens, result.cached_tokens) == (2195, 503, 100)


def test_anthropic_cannot_honour_json_mode() -> None:
    with pytest.raises(Unsupported, match="response_format"):
        anthropic.build_chat(request(response_format_json='{"type":"json_object"}'),
                             Upstream("anthropic", "https://api.anthropic.com", "claude-x"))


def test_anthropic_overloaded_is_retryable() -> None:
    error = anthropic.parse_error(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
                                  {})
    assert error.retryable and "overloaded_error" in error.message


def test_gemini_speaks_contents_with_user_and_model_roles() -> None:
    call = gemini.build_chat(request(max_tokens=100), Upstream("google", "https://g", "gemini-1.5-pro", "AIza"))
    body = orjson.loads(call.body)

    assert call.url == "https://g/v1beta/models/gemini-1.5-pro:generateContent"
    assert call.headers["x-goog-api-key"] == "AIza"
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp": 18}}}]
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.5}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_gemini_reference_function_call_response() -> None:
    result = gemini.parse_chat({
        "candidates": [{"content": {"parts": [{"functionCall": {"name": "find_theaters", "args": {
            "location": "Mountain View, CA", "movie": "Barbie"}}}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 556, "totalTokenCount": 560},
        "modelVersion": "gemini-1.5-flash-001",
    })

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0]["name"] == "find_theaters"
    assert orjson.loads(result.tool_calls[0]["arguments"]) == {"location": "Mountain View, CA", "movie": "Barbie"}
    assert (result.prompt_tokens, result.completion_tokens) == (4, 556)


def test_gemini_bad_key_is_an_upstream_auth_error_not_the_callers() -> None:
    body = (b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", '
            b'"status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}}')
    assert gemini.parse_error(400, body, {}).kind == "upstream_auth"


def test_bedrock_converse_is_signed_with_sigv4_for_its_region() -> None:
    upstream = Upstream("bedrock", "https://bedrock-runtime.eu-west-1.amazonaws.com",
                        "anthropic.claude-3-5-sonnet-20240620-v1:0", "secret",
                        options={"region": "eu-west-1", "access_key_id": "AKIDEXAMPLE", "session_token": ""})
    call = bedrock.build_chat(request(), upstream)
    body = orjson.loads(call.body)

    assert call.url.endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    assert call.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/bedrock/aws4_request" in call.headers["Authorization"]
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 18}}]}}]}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["location"]


def test_bedrock_reference_tool_use_response() -> None:
    result = bedrock.parse_chat({
        "output": {"message": {"role": "assistant", "content": [{"toolUse": {
            "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 375, "outputTokens": 55, "totalTokens": 430},
        "metrics": {"latencyMs": 1198},
    })

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == ({"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                                  "arguments": '{"sign":"WZPZ"}'},)
    assert (result.prompt_tokens, result.completion_tokens) == (375, 55)


def test_bedrock_throttling_is_retryable() -> None:
    error = bedrock.parse_error(429, b'{"message": "Too many requests"}',
                                {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/"})
    assert (error.kind, error.retryable) == ("rate_limited", True)


def test_azure_calls_the_deployment_with_api_key_and_version() -> None:
    upstream = Upstream("azure", "https://res.openai.azure.com", "my-deployment", "azure-key",
                        options={"api_version": "2024-10-21", "auth": "key"})
    call = azure.build_chat(request(), upstream)

    assert call.url == ("https://res.openai.azure.com/openai/deployments/my-deployment/chat/completions"
                        "?api-version=2024-10-21")
    assert call.headers["api-key"] == "azure-key"
    assert "model" not in orjson.loads(call.body)


def test_azure_with_entra_id_sends_a_bearer_token() -> None:
    upstream = Upstream("azure", "https://res.openai.azure.com", "d", "eyJ0eXAi-entra-token", options={"auth": "entra"})
    headers = azure.build_chat(request(), upstream).headers

    assert headers["authorization"] == "Bearer eyJ0eXAi-entra-token" and "api-key" not in headers


def test_azure_content_filter_has_its_own_kind() -> None:
    body = b'{"error": {"code": "content_filter", "message": "The response was filtered", "status": 400}}'
    assert azure.parse_error(400, body, {}).kind == "content_filter"


@pytest.mark.parametrize(("adapter", "field", "value"), [
    (anthropic, "seed", 7), (bedrock, "seed", 7), (gemini, "parallel_tool_calls", False),
    (bedrock, "parallel_tool_calls", False),
])
def test_a_parameter_without_a_provider_field_is_refused_not_dropped(adapter: object, field: str,
                                                                     value: object) -> None:
    upstream = Upstream("p", "https://x", "m", "k", options={"region": "us-east-1", "access_key_id": "AKID"})
    with pytest.raises(Unsupported, match=f"'{field}'"):
        adapter.build_chat(request(**{field: value}), upstream)  # type: ignore[attr-defined]
