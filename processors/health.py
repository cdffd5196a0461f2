"""What a router knows of each target's recent latency: the durations of its last successful calls, for
the `fastest` strategy (its own calls, and every router's through the attempts topic)."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW = 20  # the last calls a median is taken over: it follows a change within about half of them


@dataclass
class LatencyStats:
    _recent: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def fold(self, attempt: dict[str, Any]) -> None:
        if attempt["outcome"] == "ok":
            self.record(attempt["provider"], attempt.get("upstream_model") or attempt["model"], attempt["duration_ms"])

    def record(self, provider: str, model: str, duration_ms: float) -> None:
        self._recent.setdefault((provider, model), deque(maxlen=WINDOW)).append(duration_ms)

    def median_ms(self, provider: str, model: str) -> float | None:
        seen = self._recent.get((provider, model))
        return statistics.median(seen) if seen else None
