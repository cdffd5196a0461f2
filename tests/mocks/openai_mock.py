"""A wire-faithful mock of OpenAI's Chat Completions and Models API, and of Azure OpenAI's deployment
routes, for tests and benchmarks.

Written from https://platform.openai.com/docs/api-reference and Azure OpenAI's REST reference:
`Authorization: Bearer` (OpenAI) or `api-key` + `?api-version=` (Azure), the `chat.completion` object
with `tool_calls`, the `{"error": {message, type, param, code}}` body, `retry-after` on 429, Azure's
`content_filter` error. What it answers is decided in `behaviour.py`.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
import uuid
from collections import Counter
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
    vector,
    words,
)

API_KEY = os.environ.get("MOCK_OPENAI_API_KEY", "sk-mock-openai")
AZURE_KEY = os.environ.get("MOCK_AZURE_API_KEY", "azure-mock-key")
MODELS = ("gpt-4o", "gpt-4o-mini", "o1", "o3")
stats: Counter[str] = Counter()
IMAGE_SIZES = {"dall-e-2": ("256x256", "512x512", "1024x1024"), "dall-e-3": ("1024x1024", "1792x1024", "1024x1792")}
calls: Counter[str] = Counter()  # chat calls per last user text: how often each request reached the upstream


def _error(http_status: int, message: str, type_: str | None, code: str | None, headers: dict[str, str] | None = None,
           param: str | None = None, **extra: Any) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}
    stats[str(http_status)] += 1
    return Response(orjson.dumps(body), http_status, headers=headers, media_type="application/json")


def _openai_auth(request: Request) -> Response | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return _error(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                      "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", None)
    if auth[7:] != API_KEY:
        shown = auth[7:][:3] + "*" * 4 + auth[7:][-4:]
        return _error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                      "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    return None


def _conversation(model: str, body: dict[str, Any]) -> Conversation:
    messages = body["messages"]
    conversation = Conversation(model=model, max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"))
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            text = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            images = sum(1 for p in content if p.get("type") == "image_url")
        else:
            text, images = str(content or ""), 0
        conversation.prompt_words += words(text) + 3
        if message.get("role") == "user":
            conversation.last_user_text, conversation.images = text, images
            conversation.tool_result = None
        elif message.get("role") == "tool":
            conversation.tool_result = text
    conversation.tools = [(t["function"]["name"], t["function"].get("parameters") or {})
                          for t in body.get("tools") or ()]
    if body.get("tool_choice") == "none":
        conversation.tools = []
    return conversation


async def _json_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
    return body


async def _complete(body: dict[str, Any], model: str) -> Response:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "[] is too short - 'messages'", "invalid_request_error", "empty_array", param="messages")
    if model.startswith("missing-"):
        return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")
    calls[_conversation(model, body).last_user_text] += 1
    status = failure(model)
    if status == 500:
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      "server_error", None)
    if status == 429:
        return _error(429, "Rate limit reached for requests. Please try again in 30s.", "requests",
                      "rate_limit_exceeded", headers={"retry-after": "30", "x-ratelimit-remaining-requests": "0"})
    if status == 400:
        return _error(400, "Invalid value for 'temperature': must be between 0 and 2.", "invalid_request_error",
                      "invalid_value", param="temperature")
    if model.endswith("-content-filter"):
        return _error(400, "The response was filtered due to the prompt triggering Azure OpenAI's content "
                      "management policy. Please modify your prompt and retry.", None, "content_filter",
                      param="prompt", status=400, innererror={
                          "code": "ResponsibleAIPolicyViolation",
                          "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}})
    await maybe_stall(model)
    result = answer(_conversation(model, body))
    if body.get("stream"):
        return StreamingResponse(_stream(model, body, result), media_type="text/event-stream")
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None, "refusal": None}
    finish = "length" if result.truncated else "stop"
    if result.tool_name:
        message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                  "function": {"name": result.tool_name,
                                               "arguments": orjson.dumps(result.tool_args).decode()}}]
        finish = "tool_calls"
    stats["200"] += 1
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{model}-2024-08-06" if model in MODELS else model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "system_fingerprint": "fp_mock",
    }
    headers = {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1", "openai-version": "2020-10-01"}
    return Response(orjson.dumps(payload), headers=headers, media_type="application/json")


async def _stream(model: str, body: dict[str, Any], result: Any) -> AsyncIterator[bytes]:
    """`chat.completion.chunk` events as OpenAI sends them, then the usage chunk and `data: [DONE]`."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_mock"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    plan = stream_plan(model)
    yield chunk({"role": "assistant", "content": "", "refusal": None})
    sent = 0
    async for piece in paced(stream_pieces(result, plan), plan):
        sent += 1
        yield chunk({"content": piece})
    finish = "length" if result.truncated else "stop"
    if result.tool_name:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        yield chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                     "function": {"name": result.tool_name, "arguments": ""}}]})
        arguments = orjson.dumps(result.tool_args).decode()
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        finish = "tool_calls"
    yield chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        completion = sent or result.completion_tokens
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": completion,
                 "total_tokens": result.prompt_tokens + completion}
        yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
    if not model.endswith("-no-done"):  # `-no-done`: the connection ends without OpenAI's terminal event
        yield b"data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    if (denied := _openai_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    if not isinstance(body.get("model"), str):
        return _error(400, "you must provide a model parameter", "invalid_request_error", None, param="model")
    return await _complete(body, body["model"])


async def azure_chat_completions(request: Request) -> Response:
    if (denied := _azure_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    return body if isinstance(body, Response) else await _complete(body, request.path_params["deployment"])


async def _embed(body: dict[str, Any], model: str) -> Response:
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    if failure(model) == 429:
        return _error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded",
                      headers={"retry-after": "30"})
    dimensions = body.get("dimensions") or 8
    tokens = sum(words(t) for t in texts)
    return Response(orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector(t, dimensions)} for i, t in enumerate(texts)],
        "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }), media_type="application/json")


async def _generate_images(body: dict[str, Any], model: str) -> Response:
    if not body.get("prompt"):
        return _error(400, "'prompt' is a required property", "invalid_request_error", None, param="prompt")
    size = body.get("size") or "1024x1024"
    if size not in IMAGE_SIZES.get(model, IMAGE_SIZES["dall-e-3"]):
        return _error(400, f"Invalid size '{size}' for {model}.", "invalid_request_error", "invalid_value",
                      param="size")
    b64 = body.get("response_format") == "b64_json"
    width, _, height = size.partition("x")
    # A PNG of the asked size is about a byte per pixel and does not compress: random bytes of that size.
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(int(width) * int(height))).decode() if b64 else ""
    data = [{"b64_json": png, "revised_prompt": body["prompt"]} if b64 else
            {"url": f"https://images.mock/{uuid.uuid4().hex}.png", "revised_prompt": body["prompt"]}
            for _ in range(body.get("n") or 1)]
    return Response(orjson.dumps({"created": int(time.time()), "data": data}), media_type="application/json")


async def embeddings(request: Request) -> Response:
    if (denied := _openai_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    return body if isinstance(body, Response) else await _embed(body, body.get("model", ""))


async def images_generations(request: Request) -> Response:
    if (denied := _openai_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    return body if isinstance(body, Response) else await _generate_images(body, body.get("model", "dall-e-2"))


def _azure_auth(request: Request) -> Response | None:
    if "api-version" not in request.query_params:
        return _error(404, "Resource not found", None, "404")
    if request.headers.get("api-key") != AZURE_KEY and request.headers.get("authorization") != f"Bearer {AZURE_KEY}":
        return Response(orjson.dumps({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                        "key or wrong API endpoint. Make sure to provide a valid key for an active subscription and "
                        "use a correct regional API endpoint for your resource."}}), 401, media_type="application/json")
    return None


async def azure_embeddings(request: Request) -> Response:
    if (denied := _azure_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    return body if isinstance(body, Response) else await _embed(body, request.path_params["deployment"])


async def azure_images(request: Request) -> Response:
    if (denied := _azure_auth(request)) is not None:
        return denied
    body = await _json_body(request)
    return body if isinstance(body, Response) else await _generate_images(body, request.path_params["deployment"])


async def list_models(request: Request) -> Response:
    if (denied := _openai_auth(request)) is not None:
        return denied
    data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in MODELS]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


async def mock_stats(_: Request) -> Response:
    return Response(orjson.dumps({**stats, "calls": calls}), media_type="application/json")


app = Starlette(routes=[
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/images/generations", images_generations, methods=["POST"]),
    Route("/openai/deployments/{deployment}/chat/completions", azure_chat_completions, methods=["POST"]),
    Route("/openai/deployments/{deployment}/embeddings", azure_embeddings, methods=["POST"]),
    Route("/openai/deployments/{deployment}/images/generations", azure_images, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/mock/stats", mock_stats, methods=["GET"]),
])


def serve(asgi_app: Starlette, default_port: int) -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    uvicorn.run(asgi_app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)


if __name__ == "__main__":
    serve(app, 18180)
