"""Anthropic Messages API: `x-api-key` and `anthropic-version` headers, the system prompt lifted out of
the messages, `max_tokens` required, content blocks (text, image, tool_use, tool_result).

Reference: https://docs.anthropic.com/en/api/messages
"""

from __future__ import annotations

from typing import Any

import orjson

from processors.providers.base import (
    ChatResult,
    HttpCall,
    ProviderError,
    StreamDelta,
    StreamFailed,
    StreamState,
    Unsupported,
    Upstream,
    data_url,
    kind_for_status,
    refuse_unless_supported,
    retry_after_seconds,
    text_of,
)

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                 "pause_turn": "stop", "refusal": "content_filter"}


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.get("parts"):
        for part in message["parts"]:
            blocks.append({"type": "text", "text": part["text"]} if part["type"] == "text"
                          else _image(part["image_url"]))
    elif message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["name"],
                       "input": orjson.loads(call["arguments"] or "{}")})
    return blocks


def _messages(request: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in request["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(text_of(message))
            continue
        if role == "tool":
            block = {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": text_of(message)}
            if out and out[-1]["role"] == "user" and out[-1]["content"][-1].get("type") == "tool_result":
                out[-1]["content"].append(block)  # results of parallel tool calls go in one user turn
            else:
                out.append({"role": "user", "content": [block]})
            continue
        out.append({"role": role, "content": _blocks(message)})
    return ("\n\n".join(system) or None), out


def build_chat(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    if request.get("response_format_json") and orjson.loads(request["response_format_json"])["type"] != "text":
        raise Unsupported(upstream.provider, "response_format", "the Messages API has no JSON mode")
    refuse_unless_supported(request, upstream.provider, seed=False, parallel_tool_calls=True, strict_tools=False)
    system, messages = _messages(request)
    body: dict[str, Any] = {"model": upstream.model, "messages": messages,
                            "max_tokens": request.get("max_tokens") or DEFAULT_MAX_TOKENS}
    if system:
        body["system"] = system
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if request.get(ours) is not None:
            body[theirs] = request[ours]
    if request.get("stop"):
        body["stop_sequences"] = request["stop"]
    if request.get("user"):
        body["metadata"] = {"user_id": request["user"]}
    if request.get("tools"):
        body["tools"] = [{"name": t["name"], **({"description": t["description"]} if t.get("description") else {}),
                          "input_schema": orjson.loads(t["parameters_json"]) if t.get("parameters_json")
                          else {"type": "object", "properties": {}}} for t in request["tools"]]
    choice = request.get("tool_choice")
    if choice:
        body["tool_choice"] = ({"type": "tool", "name": choice[9:]} if choice.startswith("function:")
                               else {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]})
        if request.get("parallel_tool_calls") is False and choice != "none":
            body["tool_choice"]["disable_parallel_tool_use"] = True
    if request.get("stream"):
        body["stream"] = True
    headers = {"content-type": "application/json", "anthropic-version": VERSION}
    if upstream.api_key:
        headers["x-api-key"] = upstream.api_key
    return HttpCall("POST", upstream.base_url + "/v1/messages", headers, orjson.dumps(body))


PARSES_TOOL_ARGUMENTS = True
STREAM_FORMAT = "sse"
_STREAM_ERRORS = {"overloaded_error": "server_error", "api_error": "server_error", "rate_limit_error": "rate_limited"}


def parse_stream_event(name: str | None, data: dict[str, Any], state: StreamState) -> list[StreamDelta]:
    """Typed events: message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error."""
    kind = data.get("type") or name
    if kind == "message_start":
        usage = data["message"].get("usage") or {}
        state.cached_tokens = int(usage.get("cache_read_input_tokens") or 0)
        state.cache_write_tokens = int(usage.get("cache_creation_input_tokens") or 0)
        state.prompt_tokens = int(usage.get("input_tokens") or 0) + state.cached_tokens + state.cache_write_tokens
    elif kind == "content_block_start" and data["content_block"]["type"] == "tool_use":
        block = data["content_block"]
        return [StreamDelta(tool_calls=({"index": state.tool_call_index(data["index"]), "id": block["id"],
                                         "name": block["name"], "arguments": ""},))]
    elif kind == "content_block_delta":
        delta = data["delta"]
        if delta["type"] == "text_delta":
            return [StreamDelta(delta["text"])]
        if delta["type"] == "input_json_delta":
            return [StreamDelta(tool_calls=({"index": state.tool_call_index(data["index"]), "id": None, "name": None,
                                             "arguments": delta["partial_json"]},))]
    elif kind == "message_delta":
        if data["delta"].get("stop_reason"):
            state.finish_reason = _STOP_REASONS.get(data["delta"]["stop_reason"], "stop")
        state.completion_tokens = int((data.get("usage") or {}).get("output_tokens") or state.completion_tokens)
    elif kind == "message_stop":
        state.ended = True
    elif kind == "error":
        error = data.get("error") or {}
        raise StreamFailed(ProviderError(_STREAM_ERRORS.get(error.get("type"), "server_error"),  # type: ignore[arg-type]
                                         f"{error.get('type', 'error')}: {error.get('message', '')}"))
    return []


def parse_chat(body: dict[str, Any]) -> ChatResult:
    text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    calls = tuple({"id": b["id"], "name": b["name"], "arguments": orjson.dumps(b["input"]).decode()}
                  for b in body["content"] if b["type"] == "tool_use")
    usage = body.get("usage") or {}
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    return ChatResult(
        content=text,
        finish_reason=_STOP_REASONS.get(body.get("stop_reason") or "end_turn", "stop"),
        prompt_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        tool_calls=calls,
        upstream_id=body.get("id"),
    )


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    """`{"type": "error", "error": {"type": "overloaded_error", "message": ...}}`; 529 is overloaded."""
    message = f"HTTP {status}"
    try:
        error = orjson.loads(body).get("error") or {}
        message = f"{error.get('type', 'error')}: {error.get('message', message)}"
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:200].decode(errors="replace") or message
    return ProviderError(kind_for_status(status), message, status, retry_after_seconds(headers))
