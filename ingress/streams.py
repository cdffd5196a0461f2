"""Streamed answers as Server-Sent Events: OpenAI's `chat.completion.chunk` format, and the gateway's
own native format (`start`, `delta`, `tool_call`, `end`, `error` events).

The chunks arrive as ResponseChunk events on this instance's reply partition, in order. A stream locks
onto the processing run (run_id) of its first chunk: chunks of another run (the request redelivered
after a router crash) end the stream with an error instead of splicing two generations together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ingress.answers import _tool_calls
from ingress.bridge import Reply


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _error(type_: str, code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


class Renderer(Protocol):
    """Each method: the SSE events of one record, as the bytes of one socket write (b"" for none)."""

    def chunk(self, chunk: dict[str, Any]) -> bytes: ...

    def end(self, reply: dict[str, Any]) -> bytes: ...

    def error(self, error: dict[str, Any]) -> bytes: ...


class OpenAIRenderer:
    """`chat.completion.chunk` events, a usage chunk when asked for, then `data: [DONE]`."""

    def __init__(self, request_id: str, created: int, include_usage: bool) -> None:
        self._base = {"id": request_id, "object": "chat.completion.chunk", "created": created,
                      "system_fingerprint": None}
        self._include_usage = include_usage
        self._started = False
        self._model = ""

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        return _sse({**self._base, "model": self._model, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]})

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = []
        self._model = chunk["model"]
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}, None))
        delta: dict[str, Any] = {}
        if chunk["content"]:
            delta["content"] = chunk["content"]
        if chunk["tool_calls"]:
            delta["tool_calls"] = [
                {"index": c["index"], **({"id": c["id"], "type": "function"} if c["id"] else {}),
                 "function": {k: c[k] for k in ("name", "arguments") if c[k] is not None}}
                for c in chunk["tool_calls"]]
        if delta or chunk["finish_reason"]:
            out.append(self._chunk(delta, chunk["finish_reason"]))
        return b"".join(out)

    def end(self, reply: dict[str, Any]) -> bytes:
        out = []
        if self._include_usage:
            out.append(_sse({**self._base, "model": reply["model"], "choices": [], "usage": {
                "prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
                "total_tokens": reply["total_tokens"],
                "prompt_tokens_details": {"cached_tokens": reply["cached_tokens"]},
                "completion_tokens_details": {"reasoning_tokens": reply["reasoning_tokens"]}}}))
        return b"".join([*out, b"data: [DONE]\n\n"])

    def error(self, error: dict[str, Any]) -> bytes:
        return _sse(error)


class NativeRenderer:
    """The gateway's own events: `start` {id, model, provider}, `delta` {content}, `tool_call` {index, id,
    name, arguments}, `end` {finish_reason, tool_calls, usage with cost, latency_ms, ttft_ms}, `error`."""

    def __init__(self, request_id: str) -> None:
        self._id = request_id
        self._started = False

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = []
        if not self._started:
            self._started = True
            out.append(_sse({"id": self._id, "model": chunk["model"], "provider": chunk["provider"]}, "start"))
        if chunk["content"]:
            out.append(_sse({"content": chunk["content"]}, "delta"))
        out.extend(_sse(call, "tool_call") for call in chunk["tool_calls"])
        return b"".join(out)

    def end(self, reply: dict[str, Any]) -> bytes:
        return _sse({
            "id": reply["request_id"], "model": reply["model"], "provider": reply["provider"],
            "finish_reason": reply["finish_reason"], "tool_calls": _tool_calls(reply),
            "usage": {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
                      "total_tokens": reply["total_tokens"], "cached_tokens": reply["cached_tokens"],
                      "reasoning_tokens": reply["reasoning_tokens"], "cost_usd": reply["cost_usd"]},
            "latency_ms": reply["latency_ms"], "ttft_ms": reply["ttft_ms"]}, "end")

    def error(self, error: dict[str, Any]) -> bytes:
        return _sse(error, "error")


async def events(first: Reply, queue: asyncio.Queue[Reply], deadline: float, renderer: Renderer,
                 finished: list[bool]) -> AsyncIterator[bytes]:
    """The SSE body from the first chunk to the end, one piece per record; sets finished[0] once the stream
    ended on its own."""
    name, record = first
    run_id = record.get("run_id")
    seen = -1  # the last chunk's number: a chunk sent again after a transient error may be on Kafka twice
    while True:
        if name == "ResponseChunk":
            if record["run_id"] != run_id:
                yield renderer.error(_error("api_error", "stream_interrupted",
                                            "the stream was interrupted by a router restart; retry"))
                break
            if record["seq"] > seen:
                seen = record["seq"]
                if piece := renderer.chunk(record):
                    yield piece
        else:
            yield renderer.end(record) if name == "ResponseCompleted" else renderer.error(
                _error(record["error_type"], record["code"], record["message"]))
            break
        try:
            async with asyncio.timeout_at(deadline):
                name, record = await queue.get()
        except TimeoutError:
            yield renderer.error(_error("api_error", "deadline_exceeded", "the request's deadline passed"))
            break
    finished[0] = True


class SseResponse(StreamingResponse):
    """An event stream whose head and first piece leave at once, from the handler's own task, before
    starlette starts watching for the caller's disconnect; `closed` runs however the response ends (also
    when the caller left before the body was ever read)."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str], closed: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            first = await anext(self.body_iterator)  # type: ignore[call-overload]
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            await super().__call__(scope, receive, send)
        finally:
            self._closed()

    async def stream_response(self, send: Send) -> None:
        """The pieces after the first (the head has left)."""
        async for piece in self.body_iterator:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
