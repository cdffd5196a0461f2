"""A wire-faithful mock of OpenAI's Chat Completions and Models API, for tests and benchmarks.

Written from https://platform.openai.com/docs/api-reference: `Authorization: Bearer` auth, the
`chat.completion` object, the `{"error": {message, type, param, code}}` error body, `retry-after` on
429, and OpenAI's response headers. The model name steers it, as gateways always forward it:
`...-fail-500`, `...-fail-429`, `...-fail-400`, `...-stall-<seconds>`; `missing-...` does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
import uuid
from collections import Counter

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API_KEY = os.environ.get("MOCK_OPENAI_API_KEY", "sk-mock-openai")
MODELS = ("gpt-4o", "gpt-4o-mini", "o1", "o3")
stats: Counter[str] = Counter()


def _error(status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None,
           param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    stats[str(status)] += 1
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _authorized(request: Request) -> Response | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return _error(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                      "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", None)
    if auth[7:] != API_KEY:
        shown = auth[7:][:3] + "*" * 4 + auth[7:][-4:]
        return _error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                      "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    return None


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


async def chat_completions(request: Request) -> Response:
    if (denied := _authorized(request)) is not None:
        return denied
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str):
        return _error(400, "you must provide a model parameter", "invalid_request_error", None, param="model")
    if not isinstance(messages, list) or not messages:
        return _error(400, "[] is too short - 'messages'", "invalid_request_error", "empty_array", param="messages")
    if model.startswith("missing-"):
        return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")
    if model.endswith("-fail-500"):
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      "server_error", None)
    if model.endswith("-fail-429"):
        return _error(429, "Rate limit reached for requests. Please try again in 30s.", "requests",
                      "rate_limit_exceeded", headers={"retry-after": "30", "x-ratelimit-remaining-requests": "0"})
    if model.endswith("-fail-400"):
        return _error(400, "Invalid value for 'temperature': must be between 0 and 2.", "invalid_request_error",
                      "invalid_value", param="temperature")
    if stall := re.search(r"-stall-(\d+(?:\.\d+)?)$", model):
        await asyncio.sleep(float(stall.group(1)))
    prompt = " ".join(str(m.get("content", "")) for m in messages)
    last = str(messages[-1].get("content", ""))
    content = f"Hello from the mock! You said: {last}"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    completion_tokens = _tokens(content)
    finish = "stop"
    if isinstance(max_tokens, int) and completion_tokens > max_tokens:
        content = " ".join(content.split()[:max_tokens])
        completion_tokens, finish = max_tokens, "length"
    prompt_tokens = _tokens(prompt) + 3 * len(messages)
    stats["200"] += 1
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{model}-2024-08-06" if model in MODELS else model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "system_fingerprint": "fp_mock",
    }
    headers = {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1", "openai-version": "2020-10-01",
               "openai-organization": "mock-org"}
    return Response(orjson.dumps(payload), headers=headers, media_type="application/json")


async def list_models(request: Request) -> Response:
    if (denied := _authorized(request)) is not None:
        return denied
    data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in MODELS]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


async def mock_stats(_: Request) -> Response:
    return Response(orjson.dumps(dict(stats)), media_type="application/json")


app = Starlette(routes=[
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/mock/stats", mock_stats, methods=["GET"]),
])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18180)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
