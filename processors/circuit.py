"""A circuit breaker per route (provider and upstream model): after `failures` retryable failures in a
row the route is skipped for `cooldown_s`, then one trial call decides whether it closes again.

State is this router instance's own view of upstream health (not replicated: a restarted router
starts with every circuit closed, which costs at most `failures` calls to learn again).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def allow(self, route: tuple[str, str], now: float) -> bool:
        """Closed: yes. Open: no, until the cool-down is over; then one trial call at a time."""
        state = self._routes.get(route)
        if state is None or state.opened_at is None:
            return True
        if now - state.opened_at < self.cooldown_s or state.trial_running:
            return False
        state.trial_running = True
        return True

    def record(self, route: tuple[str, str], ok: bool, now: float) -> None:
        state = self._routes.setdefault(route, _Route())
        state.trial_running = False
        if ok:
            state.failures, state.opened_at = 0, None
            return
        state.failures += 1
        if state.failures >= self.failures or state.opened_at is not None:
            state.opened_at = now
