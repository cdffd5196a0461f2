"""Events as table rows (pure): UsageRecorded -> `requests`, AttemptFinished -> `attempts`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

REQUEST_COLUMNS = (
    "event_id", "request_id", "recorded_at", "project", "key_id", "user", "operation", "model", "provider",
    "status", "error_code", "stream", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "cost_usd", "latency_ms", "ttft_ms", "attempts", "prompt_id", "prompt_version", "team",
    "cache", "cache_similarity", "cost_saved_usd", "route", "strategy",
)
ATTEMPT_COLUMNS = (
    "attempt_id", "request_id", "project", "attempt_no", "started_at", "model", "provider", "outcome", "status",
    "error_kind", "retryable", "duration_ms",
)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def request_row(usage: dict[str, Any]) -> tuple[Any, ...]:
    return (
        usage["event_id"], usage["request_id"], _time(usage["recorded_at_ms"]), usage["project"], usage["key_id"],
        usage.get("user"), usage.get("operation") or "chat", usage["model"], usage["provider"], usage["status"],
        usage["error_code"], bool(usage.get("stream")), usage["prompt_tokens"], usage["completion_tokens"],
        usage.get("cached_tokens") or 0, usage.get("reasoning_tokens") or 0, usage["cost_usd"], usage["latency_ms"],
        usage.get("ttft_ms"), usage["attempts"], usage.get("prompt_id"), usage.get("prompt_version"),
        usage.get("team"), usage.get("cache"), usage.get("cache_similarity"), usage.get("cost_saved_usd") or 0.0,
        usage.get("route"), usage.get("strategy"),
    )


def attempt_row(attempt: dict[str, Any]) -> tuple[Any, ...]:
    return (
        attempt["attempt_id"], attempt["request_id"], attempt["project"], attempt["attempt_no"],
        _time(attempt["started_at_ms"]), attempt["model"], attempt["provider"], attempt["outcome"],
        attempt["status"], attempt["error_kind"], bool(attempt["retryable"]), attempt["duration_ms"],
    )
