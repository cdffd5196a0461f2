"""A wire-faithful mock of Google's Gemini API `generateContent`
(https://ai.google.dev/api/generate-content): `x-goog-api-key` header (or `?key=`), roles user/model,
`systemInstruction`, `functionDeclarations` / `functionCall` / `functionResponse`, `inlineData`,
`usageMetadata`, and Google's `{"error": {"code", "message", "status"}}` errors."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.mocks.behaviour import (
    Conversation,
    answer,
    failure,
    maybe_stall,
    paced,
    stream_pieces,
    stream_plan,
    words,
)
from tests.mocks.openai_mock import serve

API_KEY = os.environ.get("MOCK_GEMINI_API_KEY", "gemini-mock-key")
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE"}


def _error(code: int, message: str, reason: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    return Response(orjson.dumps({"error": error}), code, media_type="application/json")


def _camel(value: Any, inside_schema: bool = False) -> Any:
    """Proto3 JSON accepts both lowerCamelCase and the proto's snake_case names: read either (the SDK
    sends `parameters_json_schema`); schemas (user data) are left as they are."""
    if isinstance(value, list):
        return [_camel(v, inside_schema) for v in value]
    if not isinstance(value, dict) or inside_schema:
        return value
    out = {}
    for key, item in value.items():
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        out[camel] = _camel(item, camel in ("parameters", "parametersJsonSchema", "response", "args",
                                            "responseSchema", "responseJsonSchema"))
    return out


def _conversation(model: str, body: dict[str, Any]) -> Conversation:
    config = body.get("generationConfig") or {}
    conversation = Conversation(model=model, max_tokens=config.get("maxOutputTokens"))
    system = body.get("systemInstruction") or {}
    conversation.prompt_words = words(" ".join(p.get("text", "") for p in system.get("parts") or ()))
    for content in body.get("contents") or ():
        parts = content.get("parts") or []
        text = " ".join(p["text"] for p in parts if "text" in p)
        conversation.prompt_words += words(text) + 3
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if content.get("role", "user") == "user" and responses:
            response = responses[-1].get("response") or {}
            conversation.tool_result = str(response.get("result", orjson.dumps(response).decode()))
        elif content.get("role", "user") == "user":
            conversation.last_user_text = text
            conversation.images = sum(1 for p in parts if "inlineData" in p)
            conversation.tool_result = None
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if mode != "NONE":
        conversation.tools = [(d["name"], d.get("parameters") or d.get("parametersJsonSchema") or {})
                              for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
    return conversation


async def generate_content(request: Request) -> Response:
    if (request.headers.get("x-goog-api-key") or request.query_params.get("key")) != API_KEY:
        return _error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
    model, _, method = request.path_params["model_method"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        return _error(404, f"Method {method} is not found for this mock.")
    try:
        body = _camel(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        return _error(400, "Invalid JSON payload received.")
    if not body.get("contents"):
        return _error(400, "* GenerateContentRequest.contents: contents is not specified")
    status = failure(model)
    if status == 429:
        return _error(429, "Resource has been exhausted (e.g. check quota).")
    if status:
        return _error(status, {500: "An internal error has occurred.", 503: "The model is overloaded.",
                               400: "Invalid value at 'generation_config.temperature'"}.get(status, "error"))
    await maybe_stall(model)
    result = answer(_conversation(model, body))
    if method == "streamGenerateContent":
        if request.query_params.get("alt") != "sse":
            return _error(400, "This mock streams with alt=sse only.")
        return StreamingResponse(_stream(model, result), media_type="text/event-stream")
    parts: list[dict[str, Any]] = []
    if result.text:
        parts.append({"text": result.text})
    if result.tool_name:
        parts.append({"functionCall": {"name": result.tool_name, "args": result.tool_args}})
    payload = {
        "candidates": [{"content": {"parts": parts, "role": "model"},
                        "finishReason": "MAX_TOKENS" if result.truncated else "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": result.prompt_tokens, "candidatesTokenCount": result.completion_tokens,
                          "totalTokenCount": result.prompt_tokens + result.completion_tokens},
        "modelVersion": f"{model}-002",
        "responseId": uuid.uuid4().hex[:22],
    }
    return Response(orjson.dumps(payload), media_type="application/json")


async def _stream(model: str, result: Any) -> AsyncIterator[bytes]:
    """`alt=sse`: each event a GenerateContentResponse with the next parts; the last has the finish and usage."""
    plan = stream_plan(model)
    response_id = uuid.uuid4().hex[:22]

    def event(parts: list[dict[str, Any]], last: bool = False, sent: int = 0) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        payload: dict[str, Any] = {"candidates": [candidate], "modelVersion": f"{model}-002", "responseId": response_id}
        if last:
            candidate["finishReason"] = "MAX_TOKENS" if result.truncated else "STOP"
            payload["usageMetadata"] = {"promptTokenCount": result.prompt_tokens, "candidatesTokenCount": sent,
                                        "totalTokenCount": result.prompt_tokens + sent}
        return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"

    sent = 0
    async for piece in paced(stream_pieces(result, plan), plan):
        sent += 1
        yield event([{"text": piece}])
    calls = [{"functionCall": {"name": result.tool_name, "args": result.tool_args}}] if result.tool_name else []
    yield event(calls, last=True, sent=sent or result.completion_tokens)


app = Starlette(routes=[Route("/v1beta/models/{model_method}", generate_content, methods=["POST"])])

if __name__ == "__main__":
    serve(app, 18183)
