"""OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp server, ...).

Reference: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

from typing import Any

import orjson

from processors.providers.base import (
    DONE,
    ChatResult,
    EmbeddingsResult,
    HttpCall,
    ImagesResult,
    ProviderError,
    StreamDelta,
    StreamFailed,
    StreamState,
    Unsupported,
    Upstream,
    kind_for_status,
    retry_after_seconds,
)


def message_to_openai(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message["role"]}
    if message.get("parts"):
        out["content"] = [
            {"type": "text", "text": p["text"]} if p["type"] == "text"
            else {"type": "image_url", "image_url": {"url": p["image_url"], **({"detail": p["detail"]}
                                                                              if p.get("detail") else {})}}
            for p in message["parts"]
        ]
    else:
        out["content"] = message.get("content")
    if message.get("name"):
        out["name"] = message["name"]
    if message.get("tool_calls"):
        out["tool_calls"] = [{"id": c["id"], "type": "function",
                              "function": {"name": c["name"], "arguments": c["arguments"]}}
                             for c in message["tool_calls"]]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def chat_body(request: dict[str, Any], upstream: Upstream) -> dict[str, Any]:
    """The Chat Completions body (without `model`, which Azure takes from the URL)."""
    reasoning = "reasoning" in upstream.capabilities
    body: dict[str, Any] = {"messages": [message_to_openai(m) for m in request["messages"]]}
    if request.get("max_tokens") is not None:
        body["max_completion_tokens" if reasoning else "max_tokens"] = request["max_tokens"]
    if reasoning:
        for name in ("temperature", "top_p"):
            if request.get(name) is not None:
                raise Unsupported(upstream.provider, name, f"reasoning model {upstream.model} does not take it")
    _copy_set(body, request, ("temperature", "top_p", "seed", "user", "parallel_tool_calls"))
    if request.get("stop"):
        body["stop"] = request["stop"]
    if request.get("tools"):
        body["tools"] = [{"type": "function", "function": {
            "name": t["name"],
            **({"description": t["description"]} if t.get("description") else {}),
            **({"parameters": orjson.loads(t["parameters_json"])} if t.get("parameters_json") else {}),
            **({"strict": t["strict"]} if t.get("strict") is not None else {}),
        }} for t in request["tools"]]
    choice = request.get("tool_choice")
    if choice:
        body["tool_choice"] = {"type": "function", "function": {"name": choice[9:]}} \
            if choice.startswith("function:") else choice
    if request.get("response_format_json"):
        body["response_format"] = orjson.loads(request["response_format_json"])
    if request.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # the gateway records usage whatever the caller asked
    return body


def parse_stream_event(name: str | None, data: dict[str, Any], state: StreamState) -> list[StreamDelta]:
    """A `chat.completion.chunk`; the last one (empty choices) carries usage; `[DONE]` ends the stream."""
    if name == DONE:
        state.ended = True
        return []
    if "error" in data:
        error = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
        raise StreamFailed(ProviderError("server_error", str(error.get("message") or error)))
    usage = data.get("usage")
    if usage:
        state.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        state.completion_tokens = int(usage.get("completion_tokens") or 0)
        state.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        state.reasoning_tokens = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    deltas = []
    for choice in data.get("choices") or ():
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        calls = tuple({"index": c.get("index", 0), "id": c.get("id"), "name": (c.get("function") or {}).get("name"),
                       "arguments": (c.get("function") or {}).get("arguments")}
                      for c in delta.get("tool_calls") or ())
        if delta.get("content") or calls:
            deltas.append(StreamDelta(delta.get("content") or "", calls))
    return deltas


STREAM_FORMAT = "sse"


def build_chat(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    body = {"model": upstream.model, **chat_body(request, upstream)}
    return HttpCall("POST", upstream.base_url + "/chat/completions", _headers(upstream), orjson.dumps(body))


def parse_chat(body: dict[str, Any]) -> ChatResult:
    choice = body["choices"][0]
    message = choice["message"]
    usage = body.get("usage") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return ChatResult(
        content=message.get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        tool_calls=tuple({"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                         for c in message.get("tool_calls") or ()),
        upstream_id=body.get("id"),
    )


def _headers(upstream: Upstream) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if upstream.api_key:
        headers["authorization"] = f"Bearer {upstream.api_key}"
    return headers


def _copy_set(body: dict[str, Any], request: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Copy the request's fields that are set; OpenAI's names are the gateway's names."""
    body.update({name: request[name] for name in names if request.get(name) is not None})
    return body


def embeddings_body(request: dict[str, Any]) -> dict[str, Any]:
    return _copy_set({"input": request["input"], "encoding_format": "float"}, request, ("dimensions", "user"))


def build_embeddings(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    body = {"model": upstream.model, **embeddings_body(request)}
    return HttpCall("POST", upstream.base_url + "/embeddings", _headers(upstream), orjson.dumps(body))


def parse_embeddings(body: dict[str, Any]) -> EmbeddingsResult:
    data = sorted(body["data"], key=lambda d: d["index"])
    return EmbeddingsResult([d["embedding"] for d in data], int((body.get("usage") or {}).get("prompt_tokens") or 0))


def images_body(request: dict[str, Any]) -> dict[str, Any]:
    return _copy_set({"prompt": request["prompt"], "n": request["n"]}, request,
                     ("size", "quality", "response_format", "user"))


def build_images(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    body = {"model": upstream.model, **images_body(request)}
    return HttpCall("POST", upstream.base_url + "/images/generations", _headers(upstream), orjson.dumps(body))


def parse_images(body: dict[str, Any]) -> ImagesResult:
    return ImagesResult(int(body.get("created") or 0), [
        {"url": d.get("url"), "b64_json": d.get("b64_json"), "revised_prompt": d.get("revised_prompt")}
        for d in body["data"]])


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    message, code = f"HTTP {status}", None
    try:
        error = orjson.loads(body).get("error")
        if isinstance(error, dict):
            message, code = str(error.get("message") or message), error.get("code")
        elif isinstance(error, str):
            message = error
    except (orjson.JSONDecodeError, AttributeError):
        if body:
            message = body[:200].decode(errors="replace")
    kind = "content_filter" if code == "content_filter" else kind_for_status(status)
    return ProviderError(kind, message, status, retry_after_seconds(headers))
