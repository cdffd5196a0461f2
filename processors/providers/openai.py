"""OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp server, ...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

from typing import Any

import orjson

from processors.providers.base import ChatResult, HttpCall, ProviderError, kind_for_status, retry_after_seconds

_OPTIONAL = ("max_tokens", "temperature", "top_p", "seed", "user")


def build_chat(request: dict[str, Any], upstream_model: str, api_key: str | None) -> HttpCall:
    messages = []
    for message in request["messages"]:
        out = {"role": message["role"], "content": message["content"]}
        if message.get("name"):
            out["name"] = message["name"]
        messages.append(out)
    body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    for field in _OPTIONAL:
        if request.get(field) is not None:
            body[field] = request[field]
    if request.get("stop"):
        body["stop"] = request["stop"]
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return HttpCall("POST", "/chat/completions", headers, body)


def parse_chat(body: dict[str, Any]) -> ChatResult:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return ChatResult(
        content=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        upstream_id=body.get("id"),
    )


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    message = f"HTTP {status}"
    try:
        error = orjson.loads(body).get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str):
            message = error
    except (orjson.JSONDecodeError, AttributeError):
        if body:
            message = body[:200].decode(errors="replace")
    return ProviderError(kind_for_status(status), message, status, retry_after_seconds(headers))
