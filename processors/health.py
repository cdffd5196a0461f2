"""What every router knows of each target's health, folded from the attempts topic (a view of the log):
the circuit breaker's state and the recent latency the `fastest` strategy orders by. Every router reads
every attempt, its own and the others', so all of them converge on the same view, and a restarted router
reads the last `HISTORY_S` of attempts before it takes a request (it starts informed).
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from infra import kafka_clients
from infra.config import Settings
from infra.log_view import Change, LogView
from processors.circuit import CircuitBreaker

WINDOW = 20  # the last calls a median is taken over: it follows a change within about half of them
HISTORY_S = 300
NOT_ABOUT_THE_TARGET = ("unsupported", "invalid_request", "cancelled")  # outcomes that say nothing of its health


@dataclass
class LatencyStats:
    _recent: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def record(self, provider: str, model: str, duration_ms: float) -> None:
        self._recent.setdefault((provider, model), deque(maxlen=WINDOW)).append(duration_ms)

    def median_ms(self, provider: str, model: str) -> float | None:
        seen = self._recent.get((provider, model))
        return statistics.median(seen) if seen else None


@dataclass
class Health:
    breaker: CircuitBreaker
    latency: LatencyStats = field(default_factory=LatencyStats)
    _mine: OrderedDict[str, None] = field(default_factory=OrderedDict)  # observed here before the topic had them

    def observe(self, attempt: dict[str, Any], here: bool = False) -> None:
        """One attempt: a successful call's duration; whether it showed the target up (an answer, even a
        400) or down (a retryable failure), at the moment it ended. This router's own attempts count at
        once (`here`), and not again when they come back through the topic."""
        if here:
            self._mine[attempt["attempt_id"]] = None
            if len(self._mine) > 100_000:
                self._mine.popitem(last=False)
        elif attempt["attempt_id"] in self._mine:
            del self._mine[attempt["attempt_id"]]
            return
        if attempt.get("error_kind") in NOT_ABOUT_THE_TARGET:
            return
        target = (attempt["provider"], attempt.get("upstream_model") or attempt["model"])
        if attempt["outcome"] == "ok":
            self.latency.record(*target, attempt["duration_ms"])
        ended_ms = attempt["started_at_ms"] + attempt["duration_ms"]
        at = time.monotonic() - max(0.0, time.time() * 1000 - ended_ms) / 1000
        self.breaker.record(target, attempt["outcome"] == "ok" or not attempt["retryable"], at)


def fold_attempt(health: Health, change: Change) -> None:
    if change.record is not None:
        health.observe(change.record)


def health_view(settings: Settings) -> LogView[Health]:
    router = settings.config.router
    return LogView(settings.bootstrap_servers, settings.topics.attempts, fold_attempt,
                   Health(CircuitBreaker(router.circuit_failures, router.circuit_cooldown_s)), settings.config.kafka,
                   since_ms=time.time_ns() // 1_000_000 - HISTORY_S * 1000, lag_ms=kafka_clients.TRAILING_MS)
