"""The FastAPI application: native `/v1/gateway/chat`, the OpenAI-compatible API, health and readiness."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from opentelemetry.trace import SpanKind
from starlette.responses import Response, StreamingResponse

from infra import logs, metrics, secrets, tracing
from infra.config import Settings
from ingress import analytics_proxy, answers, bodies, openapi, streams
from ingress.auth import Caller, authenticate
from ingress.bridge import KafkaBridge
from ingress.errors import GatewayError, install, invalid_request
from ingress.hot_path import Handler, HotPath
from processors.catalog import load_catalog
from processors.routing import RouteTable
from schemas.topics import REPLIES

TIMEOUT_HEADER = "x-gateway-timeout-ms"
KAFKA_DOWN = GatewayError(503, "api_error", "kafka_unavailable",
                          "the gateway could not hand the request to Kafka; nothing was accepted, retry")
PROVIDER_KEY_HEADER = "x-provider-key-"


def _json(payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), headers=headers, media_type="application/json")


def _traceparent(incoming: str | None) -> str:
    """Keep the caller's W3C trace context; start a new trace when there is none."""
    if incoming and len(incoming) == 55 and incoming[2] == "-":
        return incoming
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


class RouterProbe:
    """Readiness of the processors: does the router's consumer group have members? One long-lived admin
    client; the answer is cached for a second, and concurrent probes share one check."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._checked = 0.0
        self._ok = False
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()

    async def ok(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked >= 1.0:
                self._ok = await self._check()
                self._checked = time.monotonic()
            return self._ok

    async def _check(self) -> bool:
        try:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.bootstrap_servers,
                                            request_timeout_ms=2000)
                await admin.start()
                self._admin = admin
            described = await self._admin.describe_consumer_groups([self._settings.router_group])
            groups = described[0].groups if described else []
            # DescribeGroups v0 group: (error_code, group_id, state, protocol_type, protocol, members)
            return bool(groups) and len(groups[0][5]) > 0
        except (KafkaError, OSError):
            return False


def create_app(settings: Settings, reply_partition: int | None = None, instance_id: str | None = None) -> HotPath:
    """`reply_partition` None (the default): the instance claims one itself."""
    if reply_partition is not None and not 0 <= reply_partition < REPLIES.partitions:
        raise ValueError(f"reply partition must be in [0, {REPLIES.partitions - 1}], not {reply_partition}")
    routes = RouteTable(settings.config, load_catalog(settings.config.catalog))
    bridge = KafkaBridge(settings, reply_partition, instance_id)
    probe = RouterProbe(settings)
    limits = settings.config.ingress
    keys = settings.key_projects
    byok = secrets.ProviderKeySealer(settings.env.gateway_secret, settings.previous_secrets) \
        if settings.env.gateway_secret else None

    analytics_client: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bridge.start()
        analytics_client.append(httpx.AsyncClient(timeout=httpx.Timeout(120, connect=2)))
        try:
            yield
        finally:
            await analytics_client[0].aclose()
            await probe.close()
            await bridge.stop()

    app = FastAPI(title="Kafka AI Gateway", lifespan=lifespan)
    install(app)
    openapi.install(app)
    analytics_proxy.install(app, settings, analytics_client)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        too_big = GatewayError(413, "invalid_request_error", "request_too_large",
                               f"request body is larger than {limits.max_body_bytes} bytes")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def timeout_s(request: Request) -> float:
        value = request.headers.get(TIMEOUT_HEADER)
        if value is None:
            return limits.request_timeout_s
        try:
            ms = float(value)
        except ValueError:
            ms = -1
        if not 0 < ms <= limits.max_timeout_s * 1000:
            raise invalid_request(f"{TIMEOUT_HEADER} must be a number of milliseconds in "
                                  f"(0, {int(limits.max_timeout_s * 1000)}]", "invalid_timeout")
        return ms / 1000

    def provider_keys(request: Request, event: dict[str, Any]) -> list[dict[str, str]]:
        """`x-provider-key-<provider>` headers: the caller's own key for one provider, sealed at once for
        this request only (its id, project and provider; it expires with the request's deadline)."""
        given = {name[len(PROVIDER_KEY_HEADER):]: value for name, value in request.headers.items()
                 if name.startswith(PROVIDER_KEY_HEADER)}
        if not given:
            return []
        if byok is None:
            raise invalid_request("this gateway does not accept provider keys from callers (no GATEWAY_SECRET)",
                                  "provider_keys_disabled")
        for provider in given:
            if provider not in settings.config.providers:
                raise invalid_request(f"{PROVIDER_KEY_HEADER}{provider}: no provider named '{provider}'",
                                      "unknown_provider")
        return [{"provider": p, "ciphertext": byok.seal(key, event["request_id"], event["project"], p,
                                                         event["deadline_ms"])} for p, key in given.items()]

    def request_event(request: Request, caller: Caller, body: bodies.Body, capability: str
                      ) -> tuple[dict[str, Any], float]:
        """The request record to produce, and its timeout in seconds."""
        fields = body.event_fields()
        for model in (fields["model"], *fields["fallback"]):
            if not routes.known(model):
                raise GatewayError(404, "invalid_request_error", "model_not_found",
                                   f"the model '{model}' does not exist", "model")
            if not routes.supports(model, capability):
                raise invalid_request(f"the model '{model}' does not support {capability}", "model_not_supported",
                                      "model")
        timeout = timeout_s(request)
        received = time.time_ns() // 1_000_000
        event = {
            "request_id": f"gw-{uuid.uuid4().hex}",
            "project": caller.project,
            "key_id": caller.key_id,
            "received_at_ms": received,
            "deadline_ms": received + int(timeout * 1000),
            "reply_topic": bridge.reply_topic,
            "reply_partition": bridge.reply_partition,
            **fields,
        }
        event["provider_keys"] = provider_keys(request, event)
        return event, timeout

    def failure(answer: tuple[str, dict[str, Any]] | None, event: dict[str, Any], timeout: float
                ) -> GatewayError | None:
        """The client-facing error of an answer that is no answer (deadline passed, RequestFailed)."""
        if answer is None:
            return GatewayError(504, "api_error", "deadline_exceeded",
                                f"no answer within the request's deadline of {timeout:.3f}s",
                                headers={"x-request-id": event["request_id"]})
        name, reply = answer
        if name == "RequestFailed":
            return GatewayError(reply["status"], reply["error_type"], reply["code"], reply["message"],
                                headers={"x-request-id": reply["request_id"]})
        return None

    async def stream(traceparent: str, event: dict[str, Any], wait_s: float, renderer: streams.Renderer
                     ) -> Response:
        """Produce, wait for the first chunk (an error before it is a plain JSON error), then stream SSE."""
        try:
            queue = await bridge.open_stream("RequestReceived", event, traceparent)
        except KafkaError as exc:
            raise KAFKA_DOWN from exc
        finished = [False]
        try:
            try:
                first: tuple[str, dict[str, Any]] | None = await asyncio.wait_for(queue.get(), wait_s)
            except TimeoutError:
                first = None
            if (error := failure(first, event, wait_s)) is not None:
                finished[0] = first is not None
                raise error
        except BaseException:
            bridge.close_stream(event, finished[0])
            raise
        assert first is not None
        deadline = asyncio.get_running_loop().time() + wait_s

        async def body() -> AsyncIterator[bytes]:
            try:
                async for line in streams.events(first, queue, deadline, renderer, finished):
                    yield line
            finally:
                bridge.close_stream(event, finished[0])

        return StreamingResponse(body(), media_type="text/event-stream", headers={
            "x-request-id": event["request_id"], "cache-control": "no-cache"})

    def endpoint(body_type: type[bodies.Body], event_name: str, capability: str,
                 render: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Handler:
        async def handler(request: Request) -> Response:
            incoming = request.headers.get("traceparent")
            with tracing.tracer.start_as_current_span(
                    f"{request.method} {request.url.path}", context=tracing.parent(incoming),
                    kind=SpanKind.SERVER) as span:
                return await respond(request, tracing.traceparent(span) or _traceparent(incoming))

        async def respond(request: Request, traceparent: str) -> Response:
            caller = authenticate(request.headers.get("authorization"), keys)
            body = bodies.parse(body_type, await read_body(request))
            event, timeout = request_event(request, caller, body, capability)
            logs.REQUEST_ID.set(event["request_id"])
            if isinstance(body, bodies.NativeChat | bodies.OpenAIChat) and body.stream:
                renderer: streams.Renderer = streams.NativeRenderer(event["request_id"]) \
                    if isinstance(body, bodies.NativeChat) else \
                    streams.OpenAIRenderer(event["request_id"], int(time.time()), body.include_usage())
                return await stream(traceparent, event, timeout, renderer)
            try:
                answer = await bridge.submit(event_name, event, traceparent, timeout)
            except KafkaError as exc:
                raise KAFKA_DOWN from exc
            if (error := failure(answer, event, timeout)) is not None:
                raise error
            assert answer is not None
            return _json(render(answer[1], body), answers.gateway_headers(answer[1]))
        return handler

    @app.get("/v1/models", responses={401: openapi.error_response("missing or wrong gateway key")})
    async def models(request: Request) -> Response:
        authenticate(request.headers.get("authorization"), keys)
        data = [{"id": t.model, "object": "model", "created": 0, "owned_by": t.provider}
                for t in routes.servable_models()]
        return _json({"object": "list", "data": data})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready", responses={503: {"description": "not ready: the same body, naming what is not"}})
    async def ready() -> Response:
        checks = {"kafka": bridge.ready, "replies": bridge.reading, "router": await probe.ok()}
        return Response(orjson.dumps({"ready": all(checks.values()), **checks,
                                      "reply_partition": bridge.reply_partition}),
                        200 if all(checks.values()) else 503, media_type="application/json")

    return HotPath(app, {
        ("POST", "/v1/gateway/chat"): endpoint(bodies.NativeChat, "RequestReceived", "chat", answers.native),
        ("POST", "/v1/chat/completions"): endpoint(bodies.OpenAIChat, "RequestReceived", "chat", answers.openai_chat),
        ("POST", "/v1/embeddings"): endpoint(bodies.EmbeddingsBody, "EmbeddingsRequested", "embeddings",
                                             answers.embeddings),
        ("POST", "/v1/images/generations"): endpoint(bodies.ImagesBody, "ImagesRequested", "images", answers.images),
    })
