"""A wire-faithful mock of Anthropic's Messages API (https://docs.anthropic.com/en/api/messages):
`x-api-key` and `anthropic-version` required, `max_tokens` required, content blocks (text, image,
tool_use, tool_result), `{"type": "error", "error": {"type", "message"}}` errors, 529 overloaded."""

from __future__ import annotations

import os
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

API_KEY = os.environ.get("MOCK_ANTHROPIC_API_KEY", "sk-ant-mock")
_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
           404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "error", "error": {"type": _ERRORS.get(status, "api_error"), "message": message}}
    return Response(orjson.dumps(body), status, headers={"request-id": f"req_{uuid.uuid4().hex[:24]}",
                                                         **(headers or {})}, media_type="application/json")


def _text(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    text = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return text, sum(1 for b in content if b.get("type") == "image")


def _conversation(body: dict[str, Any]) -> Conversation:
    conversation = Conversation(model=body["model"], max_tokens=body["max_tokens"])
    system = body.get("system")
    conversation.prompt_words = words(system if isinstance(system, str) else _text(system or [])[0])
    for message in body["messages"]:
        content = message["content"]
        text, images = _text(content)
        conversation.prompt_words += words(text) + 3
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(content, list) else []
        if message["role"] == "user" and results:
            result = results[-1].get("content")
            conversation.tool_result = result if isinstance(result, str) else _text(result or [])[0]
        elif message["role"] == "user":
            conversation.last_user_text, conversation.images, conversation.tool_result = text, images, None
    choice = (body.get("tool_choice") or {}).get("type")
    if choice != "none":
        conversation.tools = [(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or ()]
    return conversation


async def messages(request: Request) -> Response:
    if request.headers.get("x-api-key") != API_KEY:
        return _error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return _error(400, "anthropic-version: header is required")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "There was an error parsing the body of your request")
    for required in ("model", "messages", "max_tokens"):
        if required not in body:
            return _error(400, f"{required}: Field required")
    if any(m.get("role") not in ("user", "assistant") for m in body["messages"]):
        return _error(400, "messages: roles must be 'user' or 'assistant'; use the top-level system parameter")
    model = body["model"]
    status = failure(model)
    if status == 429:
        return _error(429, "Number of request tokens has exceeded your per-minute rate limit", {"retry-after": "20"})
    if status:
        return _error(status, {500: "Internal server error", 529: "Overloaded", 400: "temperature: too high",
                               401: "invalid x-api-key"}.get(status, "error"))
    await maybe_stall(model)
    result = answer(_conversation(body))
    if body.get("stream"):
        return StreamingResponse(_stream(model, result), media_type="text/event-stream")
    content: list[dict[str, Any]] = []
    if result.text:
        content.append({"type": "text", "text": result.text})
    if result.tool_name:
        content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": result.tool_name,
                        "input": result.tool_args})
    stop = "tool_use" if result.tool_name else ("max_tokens" if result.truncated else "end_turn")
    payload = {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }
    return Response(orjson.dumps(payload), headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"},
                    media_type="application/json")


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def _stream(model: str, result: Any) -> AsyncIterator[bytes]:
    """The Messages streaming events, in Anthropic's order, with a ping."""
    plan = stream_plan(model)
    yield _event({"type": "message_start", "message": {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": result.prompt_tokens, "output_tokens": 1}}})
    index, sent = 0, 0
    pieces = stream_pieces(result, plan)
    if pieces:
        yield _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        yield _event({"type": "ping"})
        async for piece in paced(pieces, plan):
            sent += 1
            yield _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
        yield _event({"type": "content_block_stop", "index": 0})
        index = 1
    if result.tool_name:
        yield _event({"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": result.tool_name, "input": {}}})
        arguments = orjson.dumps(result.tool_args).decode()
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
            yield _event({"type": "content_block_delta", "index": index,
                          "delta": {"type": "input_json_delta", "partial_json": part}})
        yield _event({"type": "content_block_stop", "index": index})
    stop = "tool_use" if result.tool_name else ("max_tokens" if result.truncated else "end_turn")
    yield _event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": sent or result.completion_tokens}})
    yield _event({"type": "message_stop"})


app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])

if __name__ == "__main__":
    serve(app, 18182)
