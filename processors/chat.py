"""Answer one RequestReceived: walk the model chain with retries, call providers, and return the events
to emit (attempts, then the reply and the usage). Kafka stays outside; this is testable with a mock upstream."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from infra.config import Settings
from processors.catalog import cost_usd
from processors.failover import DEADLINE_EXCEEDED, ClientError, client_error, retry_delay_s
from processors.providers import ADAPTERS
from processors.providers.base import ChatResult, ProviderError, Unsupported, Upstream
from processors.routing import RouteTable, Target
from processors.upstream import UpstreamResponse, Upstreams


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Outcome:
    """The events one request produced, in the order they should be emitted."""

    reply_event: str = ""
    reply: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


class ChatHandler:
    def __init__(self, settings: Settings, routes: RouteTable, upstreams: Upstreams) -> None:
        self._settings = settings
        self._routes = routes
        self._upstreams = upstreams

    async def handle(self, request: dict[str, Any]) -> Outcome:
        outcome = Outcome()
        chain = [request["model"], *request["fallback"]]
        last: tuple[str, ProviderError] | None = None
        for model in chain:
            target = self._routes.target(model)
            if target is None or not self._routes.servable(model):
                last = last or (model, ProviderError("not_found", f"model {model} has no configured provider"))
                continue
            tries = 0
            while True:
                remaining = (request["deadline_ms"] - now_ms()) / 1000
                if remaining <= 0:
                    return self._failed(request, outcome, DEADLINE_EXCEEDED, target)
                tries += 1
                result = await self._attempt(request, target, remaining, outcome)
                if isinstance(result, ChatResult):
                    return self._completed(request, outcome, target, result)
                last = (target.provider, result)
                if result.kind in ("bad_request", "content_filter"):  # no other model will take it either
                    return self._failed(request, outcome, client_error(*last), target)
                delay = retry_delay_s(self._settings.config.retry, result, tries, remaining)
                if delay is None:
                    break
                await asyncio.sleep(delay)
        if last is None:
            error = ClientError(400, "invalid_request_error", "model_not_found", "no model to try")
        elif last[1].kind == "not_found" and last[1].status is None:
            error = ClientError(503, "api_error", "provider_not_configured", last[1].message)
        else:
            error = client_error(*last)
        return self._failed(request, outcome, error, None)

    def expired(self, request: dict[str, Any]) -> Outcome:
        """The caller's deadline passed before the work started: answer so, call nobody."""
        return self._failed(request, Outcome(), DEADLINE_EXCEEDED, None, record_usage=False)

    async def _attempt(
        self, request: dict[str, Any], target: Target, remaining_s: float, outcome: Outcome
    ) -> ChatResult | ProviderError:
        provider = self._settings.config.providers[target.provider]
        adapter = ADAPTERS[provider.kind]
        upstream = Upstream(target.provider, provider.base_url, target.upstream_model, provider.api_key(),
                            target.info.capabilities if target.info else (), provider.options())
        started_ms = now_ms()
        t0 = time.perf_counter()
        result: ChatResult | ProviderError
        try:
            call = adapter.build_chat(request, upstream)
        except Unsupported as exc:
            response: UpstreamResponse | ProviderError = ProviderError("unsupported", str(exc))
        else:
            response = await self._upstreams.send(target.provider, call, min(provider.timeout_s, remaining_s))
        if isinstance(response, UpstreamResponse):
            if response.status == 200:
                try:
                    result = adapter.parse_chat(orjson.loads(response.body))
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
                    result = ProviderError("server_error", f"unreadable response: {exc!r}", 200)
            else:
                result = adapter.parse_error(response.status, response.body, response.headers)
        else:
            result = response
        duration = (time.perf_counter() - t0) * 1000
        ok = isinstance(result, ChatResult)
        outcome.attempts.append({
            "attempt_id": str(uuid.uuid4()),
            "request_id": request["request_id"],
            "project": request["project"],
            "attempt_no": len(outcome.attempts) + 1,
            "model": target.model,
            "provider": target.provider,
            "started_at_ms": started_ms,
            "duration_ms": duration,
            "outcome": "ok" if ok else "error",
            "status": 200 if ok else result.status,  # type: ignore[union-attr]
            "error_kind": None if ok else result.kind,  # type: ignore[union-attr]
            "retryable": False if ok else result.retryable,  # type: ignore[union-attr]
            "error_message": None if ok else result.message[:500],  # type: ignore[union-attr]
        })
        return result

    def _completed(self, request: dict[str, Any], outcome: Outcome, target: Target, result: ChatResult) -> Outcome:
        finished = now_ms()
        cost = cost_usd(target.info, result.prompt_tokens, result.completion_tokens, result.cached_tokens) \
            if target.info else 0.0
        latency = float(finished - request["received_at_ms"])
        total = result.prompt_tokens + result.completion_tokens
        outcome.reply_event = "ResponseCompleted"
        outcome.reply = {
            "request_id": request["request_id"], "project": request["project"],
            "model": target.model, "provider": target.provider, "upstream_id": result.upstream_id,
            "content": result.content, "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": total, "cost_usd": cost, "latency_ms": latency,
            "attempts": len(outcome.attempts), "completed_at_ms": finished,
            "tool_calls": list(result.tool_calls), "cached_tokens": result.cached_tokens,
            "reasoning_tokens": result.reasoning_tokens,
        }
        outcome.usage = self._usage(request, outcome, target.model, target.provider, "ok", None, result, cost, latency)
        return outcome

    def _failed(
        self, request: dict[str, Any], outcome: Outcome, error: ClientError, target: Target | None,
        record_usage: bool = True,
    ) -> Outcome:
        finished = now_ms()
        outcome.reply_event = "RequestFailed"
        outcome.reply = {
            "request_id": request["request_id"], "project": request["project"], "status": error.status,
            "error_type": error.type, "code": error.code, "message": error.message,
            "attempts": len(outcome.attempts), "failed_at_ms": finished,
        }
        if record_usage:
            last = outcome.attempts[-1] if outcome.attempts else None
            model = last["model"] if last else (target.model if target else request["model"])
            provider = last["provider"] if last else (target.provider if target else "")
            outcome.usage = self._usage(request, outcome, model, provider, "error", error.code, None, 0.0,
                                        float(finished - request["received_at_ms"]))
        return outcome

    @staticmethod
    def _usage(
        request: dict[str, Any], outcome: Outcome, model: str, provider: str, status: str, code: str | None,
        result: ChatResult | None, cost: float, latency: float,
    ) -> dict[str, Any]:
        prompt = result.prompt_tokens if result else 0
        completion = result.completion_tokens if result else 0
        return {
            "event_id": request["request_id"], "request_id": request["request_id"],
            "project": request["project"], "key_id": request["key_id"], "model": model, "provider": provider,
            "status": status, "error_code": code, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "cost_usd": cost, "latency_ms": latency,
            "attempts": len(outcome.attempts), "recorded_at_ms": now_ms(),
            "cached_tokens": result.cached_tokens if result else 0,
            "reasoning_tokens": result.reasoning_tokens if result else 0,
        }
