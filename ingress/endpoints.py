"""The model endpoints (chat, embeddings, images): authenticate, validate, produce the request event, and
answer from its reply events, as JSON or as a stream. Served on the hot path (`hot_path.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response

from infra import logs, tracing
from ingress import answers, bodies, streams
from ingress.bridge import KafkaBridge
from ingress.errors import GatewayError
from ingress.hot_path import Handler
from ingress.keyring import KeyRing
from ingress.requests import RequestBuilder

KAFKA_DOWN = GatewayError(503, "api_error", "kafka_unavailable",
                          "the gateway could not hand the request to Kafka; nothing was accepted, retry")
Render = Callable[[dict[str, Any], Any], dict[str, Any]]


def _json(payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), headers=headers, media_type="application/json")


def _traceparent(incoming: str | None) -> str:
    """Keep the caller's W3C trace context; start a new trace when there is none."""
    if incoming and len(incoming) == 55 and incoming[2] == "-":
        return incoming
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def failure(answer: tuple[str, dict[str, Any]] | None, event: dict[str, Any], timeout: float) -> GatewayError | None:
    """The client-facing error of an answer that is no answer (deadline passed, RequestFailed)."""
    if answer is None:
        return GatewayError(504, "api_error", "deadline_exceeded",
                            f"no answer within the request's deadline of {timeout:.3f}s",
                            headers={"x-request-id": event["request_id"]})
    name, reply = answer
    if name == "RequestFailed":
        headers = {"x-request-id": reply["request_id"], **answers.carried_headers(reply)}
        if reply.get("retry_after_s") is not None:
            headers["retry-after"] = str(max(1, round(reply["retry_after_s"])))
        return GatewayError(reply["status"], reply["error_type"], reply["code"], reply["message"], headers=headers)
    return None


class Endpoints:
    def __init__(self, keyring: KeyRing, builder: RequestBuilder, bridge: KafkaBridge) -> None:
        self._keyring = keyring
        self._builder = builder
        self._bridge = bridge

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/gateway/chat"): self.endpoint(bodies.NativeChat, "RequestReceived", "chat", answers.native),
            ("POST", "/v1/chat/completions"): self.endpoint(bodies.OpenAIChat, "RequestReceived", "chat",
                                                            answers.openai_chat),
            ("POST", "/v1/embeddings"): self.endpoint(bodies.EmbeddingsBody, "EmbeddingsRequested", "embeddings",
                                                      answers.embeddings),
            ("POST", "/v1/images/generations"): self.endpoint(bodies.ImagesBody, "ImagesRequested", "images",
                                                              answers.images),
        }

    def endpoint(self, body_type: type[bodies.Body], event_name: str, capability: str, render: Render) -> Handler:
        async def handler(request: Request) -> Response:
            incoming = request.headers.get("traceparent")
            with tracing.span(f"{request.method} {request.scope['path']}", SpanKind.SERVER, incoming) as span:
                traceparent = tracing.traceparent(span) or _traceparent(incoming)
                return await self._respond(request, traceparent, body_type, event_name, capability, render)
        return handler

    async def _respond(self, request: Request, traceparent: str, body_type: type[bodies.Body], event_name: str,
                       capability: str, render: Render) -> Response:
        caller = self._keyring.caller(request.headers.get("authorization"))
        body = bodies.parse(body_type, await self._builder.read_body(request))
        event, timeout = self._builder.event(request, caller, body, capability)
        return await self._answer(event_name, event, body, traceparent, timeout, render)

    async def _answer(self, event_name: str, event: dict[str, Any], body: bodies.Body, traceparent: str,
                      timeout_s: float, render: Render) -> Response:
        logs.REQUEST_ID.set(event["request_id"])
        if isinstance(body, bodies.NativeChat | bodies.OpenAIChat) and body.stream:
            renderer: streams.Renderer = streams.NativeRenderer(event["request_id"]) \
                if isinstance(body, bodies.NativeChat) else \
                streams.OpenAIRenderer(event["request_id"], int(time.time()), body.include_usage())
            return await self._stream(traceparent, event, timeout_s, renderer)
        try:
            answer = await self._bridge.submit(event_name, event, traceparent, timeout_s)
        except KafkaError as exc:
            raise KAFKA_DOWN from exc
        if (error := failure(answer, event, timeout_s)) is not None:
            raise error
        assert answer is not None
        return _json(render(answer[1], body), answers.gateway_headers(answer[1]))

    async def _stream(self, traceparent: str, event: dict[str, Any], wait_s: float, renderer: streams.Renderer
                      ) -> Response:
        """Produce, wait for the first chunk (an error before it is a plain JSON error), then stream SSE."""
        bridge = self._bridge
        try:
            queue = await bridge.open_stream("RequestReceived", event, traceparent)
        except KafkaError as exc:
            raise KAFKA_DOWN from exc
        finished = [False]
        try:
            first: tuple[str, dict[str, Any]] | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):  # not wait_for, which runs queue.get() as a task of its own
                    first = await queue.get()
            if (error := failure(first, event, wait_s)) is not None:
                finished[0] = first is not None
                raise error
        except BaseException:
            bridge.close_stream(event, finished[0])
            raise
        assert first is not None
        deadline = asyncio.get_running_loop().time() + wait_s

        return streams.SseResponse(
            streams.events(first, queue, deadline, renderer, finished),
            {"x-request-id": event["request_id"], "cache-control": "no-cache", **answers.carried_headers(first[1])},
            lambda: bridge.close_stream(event, finished[0]))
