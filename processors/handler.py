"""Answer one request event (chat, embeddings or images): walk the model chain with retries, call
providers through their adapters, and return the events to emit (attempts, the reply, the usage).
Kafka stays outside; the policy is the same for every operation."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode

from infra import secrets, tracing
from infra.config import Settings
from processors.catalog import ModelInfo, cost_usd, image_cost_usd
from processors.circuit import Permit
from processors.failover import CLIENT_GONE, DEADLINE_EXCEEDED, ClientError, client_error, redact, retry_delay_s
from processors.health import Health
from processors.providers import ADAPTERS
from processors.providers.base import (
    ChatResult,
    EmbeddingsResult,
    ImagesResult,
    InvalidRequest,
    ProviderError,
    StreamFailed,
    StreamState,
    Unsupported,
    Upstream,
    check_tool_arguments,
)
from processors.routes import RouteError
from processors.routing import RouteTable, Target
from processors.upstream import (
    NO_OVERRIDES,
    STREAM_CONTENT_TYPES,
    STREAM_READERS,
    CallLimits,
    UpstreamResponse,
    Upstreams,
)
from schemas.ids import random_id

Result = ChatResult | EmbeddingsResult | ImagesResult
ChunkSink = Callable[[dict[str, Any]], Awaitable[None]]
HEDGE_LOST = "hedge lost"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Tokens:
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0


@dataclass(frozen=True)
class Operation:
    """What differs between chat, embeddings and images: adapter verbs, the reply, tokens and price."""

    name: str
    reply_event: str
    reply_fields: Callable[[Any], dict[str, Any]]
    tokens: Callable[[Any], Tokens]
    cost: Callable[[ModelInfo, Any, dict[str, Any]], float]  # (catalog entry, result, request)


def _chat_fields(r: ChatResult) -> dict[str, Any]:
    return {"upstream_id": r.upstream_id, "content": r.content, "finish_reason": r.finish_reason,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens, "tool_calls": list(r.tool_calls),
            "cached_tokens": r.cached_tokens, "reasoning_tokens": r.reasoning_tokens}


OPERATIONS = {
    "RequestReceived": Operation(
        "chat", "ResponseCompleted", _chat_fields,
        lambda r: Tokens(r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.reasoning_tokens),
        lambda info, r, _: cost_usd(info, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
                                    r.cache_write_tokens)),
    "EmbeddingsRequested": Operation(
        "embeddings", "EmbeddingsCompleted", lambda r: {"embeddings": r.vectors, "prompt_tokens": r.prompt_tokens},
        lambda r: Tokens(r.prompt_tokens), lambda info, r, _: cost_usd(info, r.prompt_tokens, 0)),
    "ImagesRequested": Operation(
        "images", "ImagesCompleted", lambda r: {"created": r.created, "images": r.images},
        lambda r: Tokens(),
        lambda info, r, request: image_cost_usd(info, len(r.images), request.get("size"), request.get("quality"))),
}


def _deadline_ms(request: dict[str, Any], target: Target) -> int:
    """The caller's deadline, or the route's `deadline_s` from when the request came, whichever is first."""
    if target.spec is None or target.spec.deadline_s is None:
        return int(request["deadline_ms"])
    return min(int(request["deadline_ms"]), request["received_at_ms"] + int(target.spec.deadline_s * 1000))


def _limits(target: Target) -> CallLimits:
    spec = target.spec
    return NO_OVERRIDES if spec is None else CallLimits(spec.connect_timeout_s, spec.first_byte_timeout_s,
                                                        spec.idle_timeout_s)


def _cancelled(exc: asyncio.CancelledError) -> ProviderError:
    """A call cancelled: a hedge lost counts as a first-byte timeout (at the hedge delay); the caller
    leaving says nothing of the target."""
    if exc.args == (HEDGE_LOST,):
        return ProviderError("timeout", "no answer by the hedge delay; another target answered first")
    return ProviderError("cancelled", "the caller disconnected")


def merge_tool_fragments(fragments: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Consecutive fragments of one tool call (same index) as one: first id and name, arguments joined."""
    merged: list[dict[str, Any]] = []
    for fragment in fragments:
        if merged and merged[-1]["index"] == fragment["index"]:
            last = merged[-1]
            last["id"] = last["id"] or fragment.get("id")
            last["name"] = last["name"] or fragment.get("name")
            last["arguments"] = (last["arguments"] or "") + (fragment.get("arguments") or "")
        else:
            merged.append({"index": fragment["index"], "id": fragment.get("id"), "name": fragment.get("name"),
                           "arguments": fragment.get("arguments")})
    return tuple(merged)


@dataclass
class _Claim:
    """Which of two hedged streams sends: the first to have a chunk; `claimed` cancels the other."""

    claimed: Callable[[Stream], None]
    owner: Stream | None = None

    def take(self, stream: Stream) -> bool:
        if self.owner is None:
            self.owner = stream
            self.claimed(stream)
        return self.owner is stream


@dataclass
class Stream:
    """One streamed answer on its way out: its pieces in order (the sink numbers the records it makes of
    them), the text and tool calls they add up to, and when the first one left."""

    request: dict[str, Any]
    sink: ChunkSink
    run_id: str = field(default_factory=random_id)
    emitted: int = 0  # pieces handed to the sink (which numbers the records it makes of them)
    ttft_ms: float | None = None
    content: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    state: StreamState = field(default_factory=StreamState)  # what the provider reported, this attempt
    deltas: int = 0  # the provider's stream events that carried text or tool-call pieces: about a token each
    claim: _Claim | None = None  # hedged: the stream that sends a chunk first is the only one that sends

    @property
    def started(self) -> bool:
        return self.emitted > 0

    async def emit(self, target: Target, content: str, tool_calls: tuple[dict[str, Any], ...],
                   finish_reason: str | None = None) -> None:
        if self.claim is not None and not self.claim.take(self):
            raise asyncio.CancelledError(HEDGE_LOST)  # the other target's stream started first
        if self.ttft_ms is None:
            self.ttft_ms = float(now_ms() - self.request["received_at_ms"])
        self.content.append(content)
        for delta in tool_calls:
            call = self.tool_calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            call["name"] = delta.get("name") or call["name"]
            call["arguments"] += delta.get("arguments") or ""
        await self.sink({
            "request_id": self.request["request_id"], "project": self.request["project"], "run_id": self.run_id,
            "model": target.model, "provider": target.provider, "content": content,
            "tool_calls": [{"index": d["index"], "id": d.get("id"), "name": d.get("name"),
                            "arguments": d.get("arguments")} for d in tool_calls],
            "finish_reason": finish_reason,
        })
        self.emitted += 1

    def generated_tokens(self) -> int:
        """Completion tokens as the provider reported them, else the provider's text-bearing events (servers
        send a token an event; several events may leave as one chunk, so chunks would undercount)."""
        return self.state.completion_tokens or self.deltas

    def result(self) -> ChatResult:
        calls = tuple(self.tool_calls[i] for i in sorted(self.tool_calls))
        state = self.state
        return ChatResult(
            content="".join(self.content), finish_reason=state.finish_reason or ("tool_calls" if calls else "stop"),
            prompt_tokens=state.prompt_tokens, completion_tokens=self.generated_tokens(),
            cached_tokens=state.cached_tokens, reasoning_tokens=state.reasoning_tokens, tool_calls=calls,
            cache_write_tokens=state.cache_write_tokens,
        )


@dataclass
class Outcome:
    """The events one request produced, in the order they should be emitted."""

    reply_event: str = ""
    reply: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    fill: dict[str, Any] | None = None  # a CompletionRecorded for the cache


class RequestHandler:
    def __init__(self, settings: Settings, routes: RouteTable, upstreams: Upstreams, health: Health,
                 announce: Callable[[str, Target], None] = lambda request_id, target: None) -> None:
        self._settings = settings
        self._announce = announce  # a target is about to be called (before any of its chunks leave)
        self._routes = routes
        self._upstreams = upstreams
        secret = settings.env.gateway_secret
        self._sealer = secrets.ProviderKeySealer(secret, settings.previous_secrets) if secret else None
        # Both folded from the attempts topic (processors/health.py): every router's calls, this one's too.
        self._health = health
        self._breaker = health.breaker
        self._latency = health.latency
        # Keys and per-kind options come from the environment: read once, not on every call.
        self._credentials = {name: (p.api_key(), p.options()) for name, p in settings.config.providers.items()}
        self._secrets = [s for key, options in self._credentials.values()
                         for s in (key, options.get("access_key_id"), options.get("session_token")) if s]

    def _caller_keys(self, request: dict[str, Any]) -> dict[str, str]:
        """The provider keys the caller brought, decrypted for this request only."""
        keys: dict[str, str] = {}
        for item in request.get("provider_keys") or ():
            if self._sealer is None:
                raise Unsupported(item["provider"], "provider_keys", "this router has no GATEWAY_SECRET")
            try:
                keys[item["provider"]] = self._sealer.open(item["ciphertext"], request["request_id"],
                                                           request["project"], item["provider"], now_ms())
            except secrets.InvalidToken as exc:
                raise Unsupported(item["provider"], "provider_keys", str(exc)) from None
        return keys

    async def handle(self, event: str, request: dict[str, Any], outcome: Outcome, sink: ChunkSink | None = None
                     ) -> Outcome:
        """Answer a request into `outcome` (so what was made survives an exception: see `crashed`); a chat
        request with `stream` set sends its chunks to `sink` as they come. Failover happens before the
        first chunk only; a stream cut after it ends with RequestFailed."""
        operation = OPERATIONS[event]
        stream = Stream(request, sink) if sink is not None and request.get("stream") else None
        try:
            caller_keys = self._caller_keys(request)
        except Unsupported as exc:
            return self._failed(request, outcome, client_error("", ProviderError("unsupported", str(exc))), None)
        try:
            chain, last = self._chain(request, frozenset(caller_keys))
        except RouteError as exc:
            return self._failed(request, outcome, ClientError(400, "invalid_request_error", "route_cannot_serve",
                                                              str(exc)), None)
        i = 0
        while i < len(chain):
            hedge = chain[i + 1] if i + 1 < len(chain) else None
            tried = await self._try_target(operation, request, chain[i], hedge, caller_keys, outcome, stream)
            if isinstance(tried, Outcome):
                return tried
            last, hedged = tried
            i += 2 if hedged else 1
        if last is None:
            error = ClientError(400, "invalid_request_error", "model_not_found", "no model to try")
        elif last[1].kind == "not_found" and last[1].status is None:
            error = ClientError(503, "api_error", "provider_not_configured", last[1].message)
        else:
            error = client_error(*last)
        return self._failed(request, outcome, error, None)

    def _chain(self, request: dict[str, Any], keys: frozenset[str]
               ) -> tuple[list[Target], tuple[str, ProviderError] | None]:
        """The targets to try, in order: the model's (a route's, as its strategy orders them), then each
        fallback's; and why a named one cannot answer, if one cannot."""
        chain: list[Target] = []
        last: tuple[str, ProviderError] | None = None
        now = time.monotonic()
        for model in [request["model"], *request["fallback"]]:
            planned = self._routes.plan(model, request, self._latency.median_ms,
                                        lambda provider, upstream: self._breaker.healthy((provider, upstream), now))
            if not planned:
                last = last or (model, ProviderError("not_found", self._routes.why_not_servable(model)))
            for target in planned:
                if self._routes.provider_ready(target.provider, keys):
                    chain.append(target)
                else:
                    why = self._routes.why_not_ready(target) if target.route else self._routes.why_not_servable(model)
                    last = last or (model, ProviderError("not_found", why))
        return chain, last

    async def _try_target(self, operation: Operation, request: dict[str, Any], target: Target, hedge: Target | None,
                          keys: dict[str, str], outcome: Outcome, stream: Stream | None
                          ) -> Outcome | tuple[tuple[str, ProviderError], bool]:
        """One target, retried by its policy: the Outcome when the request is settled, else the last error
        and whether the hedge target was raced (and so tried) too."""
        route = (target.provider, target.upstream_model)
        policy = target.spec.retry if target.spec and target.spec.retry else self._settings.config.retry
        tries = 0
        while True:
            permit = self._breaker.allow(route, time.monotonic())
            if permit is None:
                return (target.provider, ProviderError(
                    "server_error", f"circuit open for {target.provider}/{target.upstream_model} after repeated "
                    "failures; skipped")), False
            remaining = (_deadline_ms(request, target) - now_ms()) / 1000
            tries += 1
            if remaining <= 0:
                self._breaker.release(route, permit)
                return self._failed(request, outcome, DEADLINE_EXCEEDED, target)
            racing = hedge if tries == 1 and target.spec and target.spec.hedge_after_ms else None
            raced = False
            try:
                if racing is not None:
                    answered_by, result, stream, raced = await self._race(operation, request, target, racing, keys,
                                                                          remaining, outcome, permit, stream)
                else:
                    answered_by, result = target, await self._guarded(operation, request, target, keys, remaining,
                                                                      outcome, stream, permit)
            except asyncio.CancelledError:  # the caller went away (RequestCancelled): record what was made
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return self._failed(request, outcome, CLIENT_GONE, target, stream=stream)
            if not isinstance(result, ProviderError):
                return self._completed(operation, request, outcome, answered_by, result, stream)
            last = (answered_by.provider, result)
            if result.kind in ("bad_request", "content_filter") or (stream and stream.started):
                return self._failed(request, outcome, client_error(*last), answered_by, stream=stream)
            if raced:
                return last, True
            if target.spec is not None and result.kind not in target.spec.retry_same_on:
                return last, False  # this route moves on at once on this error
            delay = retry_delay_s(policy, result, tries, remaining)
            if delay is None:
                return last, False
            await asyncio.sleep(delay if result.retry_after_s is not None else delay * (0.5 + random.random() / 2))

    async def _guarded(self, operation: Operation, request: dict[str, Any], target: Target, keys: dict[str, str],
                       remaining_s: float, outcome: Outcome, stream: Stream | None, permit: Permit
                       ) -> Result | ProviderError:
        """An attempt under the target's circuit breaker (which `_record_attempt` tells at once, and the
        attempts topic tells every router); a half-open trial is given back when it ends."""
        try:
            return await self._attempt(operation, request, target, keys.get(target.provider), remaining_s, outcome,
                                       stream)
        finally:
            self._breaker.release((target.provider, target.upstream_model), permit)

    async def _race(self, operation: Operation, request: dict[str, Any], first: Target, second: Target,
                    keys: dict[str, str], remaining_s: float, outcome: Outcome, permit: Permit, stream: Stream | None
                    ) -> tuple[Target, Result | ProviderError, Stream | None, bool]:
        """A hedged call: the first target alone for `hedge_after_ms`; still unanswered, the second races it.
        The first answer wins (for a stream: the first chunk, which cancels the other at once); the other
        call is cancelled and recorded. Both failing: the first's error. The last item: whether the second
        target was called (so that the chain goes on past it)."""
        assert first.spec is not None and first.spec.hedge_after_ms is not None
        racers = [(first, stream), (second, Stream(request, stream.sink) if stream is not None else None)]
        calls: dict[asyncio.Task[Result | ProviderError], int] = {}

        def claimed(winner: Stream) -> None:
            for call, i in calls.items():
                if racers[i][1] is not winner:
                    call.cancel(HEDGE_LOST)

        claim = _Claim(claimed)
        for _, racer in racers:
            if racer is not None:
                racer.claim = claim
        calls[asyncio.create_task(self._guarded(operation, request, first, keys, remaining_s, outcome, stream,
                                                permit))] = 0
        done, _ = await asyncio.wait(calls, timeout=first.spec.hedge_after_ms / 1000)
        second_permit = None if done or claim.owner else self._breaker.allow((second.provider, second.upstream_model),
                                                                              time.monotonic())
        if second_permit is not None:
            left = (_deadline_ms(request, second) - now_ms()) / 1000
            calls[asyncio.create_task(self._guarded(operation, request, second, keys, left, outcome, racers[1][1],
                                                    second_permit))] = 1
        pending = set(calls)
        failures: dict[int, ProviderError] = {}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for call in done:
                    if call.cancelled():  # lost the race
                        continue
                    result, (target, racer) = call.result(), racers[calls[call]]
                    if not isinstance(result, ProviderError) or (racer is not None and racer.started):
                        return target, result, racer, len(calls) > 1
                    failures[calls[call]] = result
            failed = min(failures)
            return racers[failed][0], failures[failed], racers[failed][1], len(calls) > 1
        finally:
            for call in pending:
                call.cancel(HEDGE_LOST)  # a first-byte timeout at the hedge delay, as the breaker sees it
            await asyncio.gather(*pending, return_exceptions=True)

    async def from_cache(self, request: dict[str, Any], entry: dict[str, Any], sink: ChunkSink | None
                         ) -> Outcome:
        """Answer with a cached reply: nothing is called or spent (the usage says what it saved); a stream
        replays it as a live one would come (a word at a time, the tool calls, the finish reason)."""
        cached = orjson.loads(entry["response_json"])
        target = Target(cached["model"], cached["provider"], cached["model"], None)
        stream = Stream(request, sink) if sink is not None and request.get("stream") else None
        if stream is not None:
            words = re.findall(r"\s*\S+\s*", cached["content"] or "") or [""]
            for word in words[:-1]:
                await stream.emit(target, word, ())
            calls = tuple({"index": i, **call} for i, call in enumerate(cached["tool_calls"] or ()))
            await stream.emit(target, words[-1], calls, cached["finish_reason"])
        finished = now_ms()
        latency = float(finished - request["received_at_ms"])
        outcome = Outcome("ResponseCompleted", {
            **cached, "request_id": request["request_id"], "project": request["project"], "cost_usd": 0.0,
            "latency_ms": latency, "attempts": 0, "completed_at_ms": finished,
            "ttft_ms": stream.ttft_ms if stream else None})
        outcome.usage = self._usage(request, outcome, target.model, target.provider, "ok", None, Tokens(), 0.0,
                                    latency, stream.ttft_ms if stream else None)
        outcome.usage["cost_saved_usd"] = entry["cost_usd"]
        return outcome

    def crashed(self, request: dict[str, Any], outcome: Outcome, exc: BaseException) -> Outcome:
        """A bug or an unforeseen input raised out of `handle`: the caller still gets an answer, with the
        attempts and usage made so far."""
        error = ClientError(500, "api_error", "internal_error",
                            f"the gateway failed while handling this request ({type(exc).__name__}); "
                            "it was logged with the request id")
        return self._failed(request, outcome, error, None)

    def refused(self, request: dict[str, Any], why: str) -> Outcome:
        """A request from an identity that may not ask this (nothing was called, nothing is billed)."""
        return self._failed(request, Outcome(), ClientError(403, "permission_error", "forbidden", why), None,
                            record_usage=False)

    def expired(self, request: dict[str, Any]) -> Outcome:
        """The caller's deadline passed before the work started: answer so, call nobody."""
        return self._failed(request, Outcome(), DEADLINE_EXCEEDED, None, record_usage=False)

    async def _attempt(
        self, operation: Operation, request: dict[str, Any], target: Target, caller_key: str | None,
        remaining_s: float, outcome: Outcome, stream: Stream | None = None,
    ) -> Result | ProviderError:
        """One provider call, as a span of the request's trace."""
        self._announce(request["request_id"], target)
        with tracing.span(f"provider {target.provider}", SpanKind.CLIENT, None,
                          {"gateway.provider": target.provider, "gateway.model": target.model,
                           "gateway.attempt": len(outcome.attempts) + 1}) as span:
            result = await self._call(operation, request, target, caller_key, remaining_s, outcome, stream)
            if isinstance(result, ProviderError):
                span.set_status(Status(StatusCode.ERROR, result.kind))
            return result

    async def _call(
        self, operation: Operation, request: dict[str, Any], target: Target, caller_key: str | None,
        remaining_s: float, outcome: Outcome, stream: Stream | None = None,
    ) -> Result | ProviderError:
        provider = self._settings.config.providers[target.provider]
        adapter = ADAPTERS[provider.kind]
        api_key, options = self._credentials[target.provider]
        upstream = Upstream(target.provider, provider.base_url, target.upstream_model, caller_key or api_key,
                            target.info.capabilities if target.info else (), options)
        build = getattr(adapter, f"build_{operation.name}", None)
        parse = getattr(adapter, f"parse_{operation.name}", None)
        started_ms = now_ms()
        t0 = time.perf_counter()
        response: UpstreamResponse | ProviderError
        try:
            if build is None or parse is None:
                raise Unsupported(target.provider, operation.name, f"{provider.kind} has no {operation.name} API")
            if getattr(adapter, "PARSES_TOOL_ARGUMENTS", False):
                check_tool_arguments(request, target.provider)
            call = build(request, upstream)
        except Unsupported as exc:
            response = ProviderError("unsupported", str(exc))
        except InvalidRequest as exc:
            response = ProviderError("invalid_request", str(exc))
        else:
            if stream is not None:
                try:
                    result = await self._stream_call(adapter, call, target, remaining_s, stream)
                except asyncio.CancelledError as exc:  # the caller left, or the other hedged stream started first
                    self._record_attempt(request, target, started_ms, t0, _cancelled(exc), outcome)
                    raise
                self._record_attempt(request, target, started_ms, t0, result, outcome)
                return result
            try:
                response = await self._upstreams.send(target.provider, call, remaining_s, _limits(target))
            except asyncio.CancelledError as exc:  # the caller left, or a hedge won the race: recorded
                self._record_attempt(request, target, started_ms, t0, _cancelled(exc), outcome)
                raise
        result: Result | ProviderError
        if not isinstance(response, UpstreamResponse):
            result = response
        elif response.status == 200:
            try:
                result = parse(orjson.loads(response.body))  # type: ignore[misc]
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
                result = ProviderError("server_error", f"unreadable response: {exc!r}", 200)
        else:
            result = adapter.parse_error(response.status, response.body, response.headers)
        self._record_attempt(request, target, started_ms, t0, result, outcome)
        return result

    async def _stream_call(self, adapter: Any, call: Any, target: Target, timeout_s: float,
                           stream: Stream) -> ChatResult | ProviderError:
        """Read a provider's stream, sending each delta on as a chunk; the result adds them up."""
        response = await self._upstreams.open(target.provider, call, timeout_s, stream=True, limits=_limits(target))
        if isinstance(response, ProviderError):
            return response
        state = stream.state = StreamState()
        stream.deltas = 0
        try:
            if response.status != 200:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return adapter.parse_error(response.status, await response.read(), headers)  # type: ignore[no-any-return]
            expected = STREAM_CONTENT_TYPES[adapter.STREAM_FORMAT]
            if response.content_type != expected:
                return ProviderError("server_error", f"the provider answered the stream as {response.content_type!r}, "
                                     f"not {expected!r}", 200)
            async for batch in STREAM_READERS[adapter.STREAM_FORMAT](response):
                # What one network read brought leaves as one chunk: a burst of tokens is one event, not many.
                deltas = [d for name, data in batch for d in adapter.parse_stream_event(name, data, state)]
                stream.deltas += len(deltas)
                if deltas:
                    await stream.emit(target, "".join(d.content for d in deltas),
                                      merge_tool_fragments([c for d in deltas for c in d.tool_calls]))
            if not state.ended:
                return ProviderError("connection", "the stream ended before the provider's terminal event", 200)
            result = stream.result()
            await stream.emit(target, "", (), result.finish_reason)
            return result
        except StreamFailed as exc:
            return exc.error
        except TimeoutError:
            return ProviderError("timeout", "the stream stalled longer than the provider's idle_timeout_s, or the "
                                 "request's deadline passed")
        except (aiohttp.ClientError, orjson.JSONDecodeError, KeyError, ValueError) as exc:
            return ProviderError("connection", f"the stream broke: {type(exc).__name__}: {exc}")
        finally:
            response.release()

    def _record_attempt(self, request: dict[str, Any], target: Target, started_ms: int, t0: float,
                        result: Result | ProviderError, outcome: Outcome) -> None:
        error = result if isinstance(result, ProviderError) else None
        duration_ms = (time.perf_counter() - t0) * 1000
        outcome.attempts.append({
            "attempt_id": random_id(),
            "request_id": request["request_id"],
            "project": request["project"],
            "attempt_no": len(outcome.attempts) + 1,
            "model": target.model,
            "provider": target.provider,
            "started_at_ms": started_ms,
            "duration_ms": duration_ms,
            "outcome": "error" if error else "ok",
            "status": error.status if error else 200,
            "error_kind": error.kind if error else None,
            "retryable": error.retryable if error else False,
            "error_message": error.message[:500] if error else None,
            "upstream_model": target.upstream_model,
            "route": target.route,
        })
        self._health.observe(outcome.attempts[-1], here=True)

    def _completed(
        self, operation: Operation, request: dict[str, Any], outcome: Outcome, target: Target, result: Result,
        stream: Stream | None = None,
    ) -> Outcome:
        finished = now_ms()
        cost = operation.cost(target.info, result, request) if target.info else 0.0
        latency = float(finished - request["received_at_ms"])
        outcome.reply_event = operation.reply_event
        outcome.reply = {
            "request_id": request["request_id"], "project": request["project"],
            "model": target.model, "provider": target.provider, "cost_usd": cost, "latency_ms": latency,
            "attempts": len(outcome.attempts), "completed_at_ms": finished, **operation.reply_fields(result),
        }
        ttft = stream.ttft_ms if stream else None
        if operation.name == "chat":
            outcome.reply["ttft_ms"] = ttft
        outcome.usage = self._usage(request, outcome, target.model, target.provider, "ok", None,
                                    operation.tokens(result), cost, latency, ttft)
        outcome.usage.update(route=target.route, strategy=target.strategy)
        return outcome

    def _failed(
        self, request: dict[str, Any], outcome: Outcome, error: ClientError, target: Target | None,
        record_usage: bool = True, stream: Stream | None = None,
    ) -> Outcome:
        finished = now_ms()
        outcome.reply_event = "RequestFailed"
        outcome.reply = {
            "request_id": request["request_id"], "project": request["project"], "status": error.status,
            "error_type": error.type, "code": error.code, "message": redact(error.message, self._secrets),
            "attempts": len(outcome.attempts), "failed_at_ms": finished,
        }
        if record_usage:
            last = outcome.attempts[-1] if outcome.attempts else None
            model = last["model"] if last else (target.model if target else request["model"])
            provider = last["provider"] if last else (target.provider if target else "")
            # A stream cut short or cancelled still used its prompt (as the provider reported it) and what it
            # generated (the provider's count, else an estimate from the text), at list price.
            made, cost = Tokens(), 0.0
            info = target.info if target else None
            if stream and stream.started:
                state = stream.state
                made = Tokens(state.prompt_tokens, stream.generated_tokens(), state.cached_tokens,
                              state.reasoning_tokens)
                cost = cost_usd(info, made.prompt, made.completion, made.cached, state.cache_write_tokens) \
                    if info else 0.0
            outcome.usage = self._usage(request, outcome, model, provider, "error", error.code, made, cost,
                                        float(finished - request["received_at_ms"]), stream.ttft_ms if stream else None)
        return outcome

    @staticmethod
    def _usage(
        request: dict[str, Any], outcome: Outcome, model: str, provider: str, status: str, code: str | None,
        tokens: Tokens, cost: float, latency: float, ttft_ms: float | None = None,
    ) -> dict[str, Any]:
        return {
            "event_id": request["request_id"], "request_id": request["request_id"],
            "project": request["project"], "key_id": request["key_id"], "model": model, "provider": provider,
            "status": status, "error_code": code, "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion, "total_tokens": tokens.prompt + tokens.completion,
            "cost_usd": cost, "latency_ms": latency, "attempts": len(outcome.attempts), "recorded_at_ms": now_ms(),
            "cached_tokens": tokens.cached, "reasoning_tokens": tokens.reasoning, "ttft_ms": ttft_ms,
            "user": request.get("user"), "stream": bool(request.get("stream")),
            "operation": "chat" if "messages" in request else "embeddings" if "input" in request else "images",
            "prompt_id": request.get("prompt_id"), "prompt_version": request.get("prompt_version"),
            "team": request.get("team"),
            "route": outcome.attempts[-1].get("route") if outcome.attempts else None,
        }
