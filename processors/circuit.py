"""A circuit breaker per route (provider and upstream model): after `failures` retryable failures in a
row the route is skipped for `cooldown_s`, then one trial call decides whether it closes again.

State is this router instance's own view of upstream health (not replicated: a restarted router
starts with every circuit closed, which costs at most `failures` calls to learn again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Permit = Literal["closed", "trial"] | None


@dataclass
class _Route:
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False


@dataclass
class CircuitBreaker:
    failures: int
    cooldown_s: float
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)

    def allow(self, route: tuple[str, str], now: float) -> Permit:
        """Closed: "closed". Open: None, until the cool-down is over; then "trial", one call at a time.
        A trial ends with `record`, or with `release` when the call decided nothing."""
        state = self._routes.get(route)
        if state is None or state.opened_at is None:
            return "closed"
        if now - state.opened_at < self.cooldown_s or state.trial_running:
            return None
        state.trial_running = True
        return "trial"

    def healthy(self, route: tuple[str, str], now: float) -> bool:
        """Closed, or open with its cool-down over (a trial may go): what loadbalance prefers."""
        state = self._routes.get(route)
        return state is None or state.opened_at is None or now - state.opened_at >= self.cooldown_s

    def release(self, route: tuple[str, str], permit: Permit) -> None:
        """Give a trial back unused (the call was refused, cancelled, or raised): the next one may try."""
        state = self._routes.get(route)
        if permit == "trial" and state is not None:
            state.trial_running = False

    def record(self, route: tuple[str, str], ok: bool, now: float) -> None:
        state = self._routes.setdefault(route, _Route())
        state.trial_running = False
        if ok:
            state.failures, state.opened_at = 0, None
            return
        state.failures += 1
        if state.failures >= self.failures or state.opened_at is not None:
            state.opened_at = now
