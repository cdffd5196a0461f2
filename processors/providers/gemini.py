"""Google Gemini `generateContent`: `x-goog-api-key` header, roles `user` / `model`, `systemInstruction`,
`functionDeclarations` / `functionCall` / `functionResponse`, `inlineData` images, `usageMetadata`.

Reference: https://ai.google.dev/api/generate-content
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
    Upstream,
    inline_parts,
    kind_for_status,
    refuse_unless_supported,
    retry_after_seconds,
    text_of,
)

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter"}
_STATUS_KINDS = {"RESOURCE_EXHAUSTED": "rate_limited", "UNAVAILABLE": "server_error", "INTERNAL": "server_error",
                 "DEADLINE_EXCEEDED": "timeout", "PERMISSION_DENIED": "upstream_auth",
                 "UNAUTHENTICATED": "upstream_auth"}


def _parts(message: dict[str, Any], provider: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": a} if kind == "text" else {"inlineData": {"mimeType": a, "data": b}}
                                   for kind, a, b in inline_parts(message, provider)]
    if not message.get("parts") and message.get("content"):
        parts.append({"text": message["content"]})
    for call in message.get("tool_calls") or ():
        parts.append({"functionCall": {"name": call["name"], "args": orjson.loads(call["arguments"] or "{}")}})
    return parts


def _contents(request: dict[str, Any], provider: str) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names = {c["id"]: c["name"] for m in request["messages"] for c in m.get("tool_calls") or ()}
    for message in request["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(text_of(message))
        elif role == "tool":
            text = text_of(message)
            try:
                response = orjson.loads(text)
            except orjson.JSONDecodeError:
                response = text
            part = {"functionResponse": {"name": call_names.get(message["tool_call_id"], message["tool_call_id"]),
                                         "response": response if isinstance(response, dict) else {"result": response}}}
            if contents and contents[-1]["role"] == "user" and "functionResponse" in contents[-1]["parts"][-1]:
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        else:
            contents.append({"role": "model" if role == "assistant" else "user", "parts": _parts(message, provider)})
    return system, contents


def build_chat(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    refuse_unless_supported(request, upstream.provider, seed=True, parallel_tool_calls=False, strict_tools=False)
    system, contents = _contents(request, upstream.provider)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    for ours, theirs in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                         ("seed", "seed")):
        if request.get(ours) is not None:
            config[theirs] = request[ours]
    if request.get("stop"):
        config["stopSequences"] = request["stop"]
    if request.get("response_format_json"):
        fmt = orjson.loads(request["response_format_json"])
        if fmt["type"] != "text":
            config["responseMimeType"] = "application/json"
        if fmt["type"] == "json_schema" and (fmt.get("json_schema") or {}).get("schema"):
            config["responseJsonSchema"] = fmt["json_schema"]["schema"]
    if config:
        body["generationConfig"] = config
    if request.get("tools"):
        body["tools"] = [{"functionDeclarations": [
            {"name": t["name"], **({"description": t["description"]} if t.get("description") else {}),
             **({"parametersJsonSchema": orjson.loads(t["parameters_json"])} if t.get("parameters_json") else {})}
            for t in request["tools"]]}]
    choice = request.get("tool_choice")
    if choice:
        if choice.startswith("function:"):
            mode: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice[9:]]}
        else:
            mode = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
        body["toolConfig"] = {"functionCallingConfig": mode}
    headers = {"content-type": "application/json"}
    if upstream.api_key:
        headers["x-goog-api-key"] = upstream.api_key
    method = "streamGenerateContent?alt=sse" if request.get("stream") else "generateContent"
    url = f"{upstream.base_url}/v1beta/models/{upstream.model}:{method}"
    return HttpCall("POST", url, headers, orjson.dumps(body))


PARSES_TOOL_ARGUMENTS = True
STREAM_FORMAT = "sse"


def parse_stream_event(_: str | None, data: dict[str, Any], state: StreamState) -> list[StreamDelta]:
    """Each SSE event is a whole GenerateContentResponse holding the next parts; usage is cumulative."""
    if "error" in data:
        error = data["error"]
        raise StreamFailed(ProviderError(_STATUS_KINDS.get(error.get("status", ""), "server_error"),  # type: ignore[arg-type]
                                         f"{error.get('status', 'ERROR')}: {error.get('message', '')}"))
    usage = data.get("usageMetadata") or {}
    if usage:
        state.prompt_tokens = int(usage.get("promptTokenCount") or 0)
        state.reasoning_tokens = int(usage.get("thoughtsTokenCount") or 0)
        state.completion_tokens = int(usage.get("candidatesTokenCount") or 0) + state.reasoning_tokens
        state.cached_tokens = int(usage.get("cachedContentTokenCount") or 0)
    candidate = (data.get("candidates") or [{}])[0]
    deltas = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"]
            index = state.tool_call_index(len(state.tool_index))
            call_id = call.get("id") or f"call_{index}_{call['name']}"
            deltas.append(StreamDelta(tool_calls=({"index": index, "id": call_id, "name": call["name"],
                                                   "arguments": orjson.dumps(call.get("args") or {}).decode()},)))
        elif part.get("text") and not part.get("thought"):
            deltas.append(StreamDelta(part["text"]))
    if candidate.get("finishReason"):
        state.ended = True
        finish = _FINISH.get(candidate["finishReason"], "stop")
        state.finish_reason = "tool_calls" if state.tool_index and finish == "stop" else finish
    return deltas


def parse_chat(body: dict[str, Any]) -> ChatResult:
    candidate = (body.get("candidates") or [{}])[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    calls = tuple({"id": p["functionCall"].get("id") or f"call_{i}_{p['functionCall']['name']}",
                   "name": p["functionCall"]["name"],
                   "arguments": orjson.dumps(p["functionCall"].get("args") or {}).decode()}
                  for i, p in enumerate(parts) if "functionCall" in p)
    usage = body.get("usageMetadata") or {}
    finish = _FINISH.get(candidate.get("finishReason") or "STOP", "stop")
    return ChatResult(
        content=text,
        finish_reason="tool_calls" if calls and finish == "stop" else finish,
        prompt_tokens=int(usage.get("promptTokenCount") or 0),
        completion_tokens=int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0),
        cached_tokens=int(usage.get("cachedContentTokenCount") or 0),
        reasoning_tokens=int(usage.get("thoughtsTokenCount") or 0),
        tool_calls=calls,
        upstream_id=body.get("responseId"),
    )


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    """`{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}`."""
    message, kind = f"HTTP {status}", kind_for_status(status)
    try:
        error = orjson.loads(body).get("error") or {}
        message = f"{error.get('status', 'ERROR')}: {error.get('message', message)}"
        kind = _STATUS_KINDS.get(error.get("status", ""), kind)  # type: ignore[assignment]
        if any(d.get("reason") == "API_KEY_INVALID" for d in error.get("details") or ()):
            kind = "upstream_auth"  # Google answers a bad key with 400 INVALID_ARGUMENT
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:200].decode(errors="replace") or message
    return ProviderError(kind, message, status, retry_after_seconds(headers))
