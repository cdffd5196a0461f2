"""Rate limits and cost budgets as pure state (no Kafka): what the gatekeeper decides for a request, and
what a usage event settles. One gatekeeper owns a project's partition, so every counter here has a single
writer and is exact for that project.

- Rate limits: a token bucket per (policy, project, key / user / model) for requests per minute (with a
  burst) and one for tokens per minute: prompt tokens estimated and taken at admission, completion
  tokens taken when the usage arrives (a bucket may go below zero: the next requests wait).
- Budgets: per period (a UTC day or month, or a rolling window), spent (settled usage, each request id
  once) plus reserved (the expected cost of admitted requests still running). A hard budget refuses a
  request once spent and reserved reach it, so its overshoot is at most what was in flight; thresholds
  are crossed once per period. A rolling window forgets each charge a window after its usage was
  recorded; a threshold it falls back under can be crossed again (a new period, named by the moment of
  the crossing).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.config import Budget, Limit
from processors.catalog import prompt_estimate


@dataclass
class Bucket:
    capacity: float
    per_second: float
    level: float
    at: float

    def refill(self, now: float) -> None:
        if now > self.at:  # restoring replays moments out of order; time only moves forward
            self.level = min(self.capacity, self.level + (now - self.at) * self.per_second)
            self.at = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.per_second) if self.per_second else math.inf


@dataclass
class Ledger:
    spent: float = 0.0
    reserved: dict[str, float] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    crossed: set[float] = field(default_factory=set)
    charges: list[tuple[int, str, float]] = field(default_factory=list)  # rolling: a heap of (at ms, id, USD)
    latest_ms: int = 0  # rolling: the latest moment this ledger has seen

    def charge(self, budget: Budget, request_id: str, cost: float, at_ms: int) -> bool:
        """Spend a request's cost once; False when it was charged already (or, rolling, is out of the window)."""
        if request_id in self.settled:
            return False
        if budget.period == "rolling":
            self.expire(budget, at_ms)
            if at_ms <= self.latest_ms - budget.window_ms:
                return False
            heapq.heappush(self.charges, (at_ms, request_id, cost))
        self.settled.add(request_id)
        self.spent += cost
        return True

    def expire(self, budget: Budget, now_ms: int) -> None:
        """A rolling window moves on to now: older charges leave it, thresholds it fell under re-arm."""
        if budget.period != "rolling":
            return
        self.latest_ms = max(self.latest_ms, now_ms)
        horizon = self.latest_ms - budget.window_ms
        while self.charges and self.charges[0][0] <= horizon:
            _, request_id, cost = heapq.heappop(self.charges)
            if request_id in self.settled:
                self.settled.discard(request_id)
                self.spent = max(0.0, self.spent - cost)
        self.crossed = {t for t in self.crossed if self.spent >= t * budget.usd}


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after_s: float | None


def period_of(budget: Budget, at_ms: int) -> str:
    if budget.period == "rolling":
        return f"rolling-{budget.window_hours:g}h"
    moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d" if budget.period == "day" else "%Y-%m")


def _per(budget: Budget) -> str:
    return f"in any {budget.window_hours:g} hours" if budget.period == "rolling" else f"a {budget.period}"


def history_start_ms(budget: Budget, now_ms: int) -> int:
    """Where the usage that decides this budget now begins: its period's first millisecond, or for a
    rolling window two windows back (so every crossing of the last window is seen with its full history)."""
    if budget.period == "rolling":
        return now_ms - 2 * budget.window_ms
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    first = moment.replace(day=1) if budget.period == "month" else moment
    return int(first.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def _subject(scope: str, request: dict[str, Any]) -> str | None:
    """The value a policy of this scope counts a request under (None: the policy does not apply)."""
    return {"project": request["project"], "key": request["key_id"], "user": request.get("user"),
            "team": request.get("team"), "model": request["model"]}[scope]


class Policies:
    def __init__(self, limits: list[Limit], budgets: list[Budget]) -> None:
        self.limits: dict[str, Limit] = {limit.id or f"limit-{i}": limit for i, limit in enumerate(limits)}
        self.budgets: dict[str, Budget] = {budget.name: budget for budget in budgets}
        self.buckets: dict[tuple[str, str, str, str], Bucket] = {}
        self.ledgers: dict[tuple[str, str, str], Ledger] = {}  # (budget name, project, period)
        self.since_ms: dict[str, int] = {}  # a budget set through the admin API counts usage from then on

    def forget(self) -> None:
        """Drop what was counted (the policies stay): the owner rebuilds it from the log."""
        self.buckets.clear()
        self.ledgers.clear()

    def refill_window_s(self) -> float:
        """How far back admissions still weigh on a bucket: the longest time one takes to fill up."""
        return max((float(limit.burst or rate) / rate * 60 for limit in self.limits.values()
                    for rate in (limit.requests_per_minute, limit.tokens_per_minute) if rate), default=60.0)

    def projects(self) -> set[str] | None:
        """The projects any policy names, or None when a policy applies to every project."""
        named: set[str] = set()
        for policy in (*self.limits.values(), *self.budgets.values()):
            if policy.project is None:
                return None
            named.add(policy.project)
        return named

    def _applies(self, policy: Limit | Budget, request: dict[str, Any]) -> str | None:
        if policy.project is not None and policy.project != request["project"]:
            return None
        subject = _subject(policy.scope, request)
        if subject is None or (policy.match is not None and policy.match != subject):
            return None
        return subject

    def admit(self, request: dict[str, Any], expected_cost: float, now: float, now_ms: int) -> Refusal | None:
        """Take what the request needs, or refuse it (taking nothing)."""
        takes: list[tuple[Bucket, float]] = []
        for i, limit in self.limits.items():
            subject = self._applies(limit, request)
            if subject is None:
                continue
            for kind, per_minute, amount in (("requests", limit.requests_per_minute, 1.0),
                                             ("tokens", limit.tokens_per_minute, float(prompt_estimate(request)))):
                if per_minute is None:
                    continue
                capacity = float(limit.burst or per_minute)
                bucket = self.buckets.setdefault((i, kind, request["project"], subject),
                                                 Bucket(capacity, per_minute / 60, capacity, now))
                bucket.refill(now)
                if bucket.level < amount:
                    wait = bucket.seconds_until(amount)
                    return Refusal(429, "rate_limited", f"{kind} per minute limit of {per_minute} for "
                                   f"{limit.scope} {subject!r} reached; retry in {math.ceil(wait)} s", wait)
                takes.append((bucket, amount))
        for budget in self.budgets.values():
            if self._applies(budget, request) is None or not budget.hard:
                continue
            ledger = self.ledger(budget, request["project"], now_ms)
            ledger.expire(budget, now_ms)
            if ledger.spent + sum(ledger.reserved.values()) >= budget.usd:
                return Refusal(429, "budget_exceeded", f"budget {budget.name!r} ({budget.usd} USD {_per(budget)}) "
                               f"is spent: {ledger.spent:.6f} USD", None)
        for bucket, amount in takes:
            bucket.level -= amount
        for budget in self.budgets.values():
            if self._applies(budget, request) is not None:
                self.ledger(budget, request["project"], now_ms).reserved[request["request_id"]] = expected_cost
        return None

    def quota(self, request: dict[str, Any], now: float) -> dict[str, list[float]]:
        """The tightest bucket of each kind that counts this request: [limit per minute, remaining, seconds
        until full], for the `x-ratelimit-*` headers."""
        tightest: dict[str, list[float]] = {}
        for i, limit in self.limits.items():
            subject = self._applies(limit, request)
            for kind, per_minute in (("requests", limit.requests_per_minute), ("tokens", limit.tokens_per_minute)):
                bucket = self.buckets.get((i, kind, request["project"], subject or ""))
                if subject is None or per_minute is None or bucket is None:
                    continue
                bucket.refill(now)
                remaining = max(0.0, math.floor(bucket.level))
                if kind not in tightest or remaining < tightest[kind][1]:
                    reset = (bucket.capacity - bucket.level) / bucket.per_second if bucket.per_second else 0.0
                    tightest[kind] = [float(per_minute), remaining, max(0.0, reset)]
        return tightest

    def set_limit(self, limit_id: str, limit: Limit | None) -> None:
        """A limit added, changed (its buckets start full again) or removed (None)."""
        self.buckets = {k: v for k, v in self.buckets.items() if k[0] != limit_id}
        if limit is None:
            self.limits.pop(limit_id, None)
        else:
            self.limits[limit_id] = limit

    def set_budget(self, name: str, budget: Budget | None, since_ms: int = 0) -> None:
        """A budget added (counting the usage recorded from `since_ms` on, whether it is settled live or
        restored after a restart), changed (its spend so far is kept) or removed (None)."""
        if budget is None:
            self.budgets.pop(name, None)
            self.since_ms.pop(name, None)
        else:
            self.budgets[name] = budget
            self.since_ms.setdefault(name, since_ms)

    def ledger(self, budget: Budget, project: str, at_ms: int) -> Ledger:
        return self.ledgers.setdefault((budget.name, project, period_of(budget, at_ms)), Ledger())

    def settle(self, usage: dict[str, Any], now: float) -> list[tuple[Budget, str, float, float]]:
        """A finished request's usage: completion tokens taken, its cost spent (once per request id), its
        reservation released. Returns the thresholds crossed: (budget, period, threshold, spent)."""
        subject_request = {"project": usage["project"], "key_id": usage["key_id"], "user": usage.get("user"),
                           "team": usage.get("team"), "model": usage["model"]}
        for (i, kind, project, subject), bucket in self.buckets.items():
            limit = self.limits.get(i)
            if limit is not None and kind == "tokens" and project == usage["project"] and \
                    self._applies(limit, subject_request) == subject:
                bucket.refill(now)
                bucket.level -= usage["completion_tokens"]
        crossed = []
        for budget in self.budgets.values():
            at_ms = usage["recorded_at_ms"]
            if self._applies(budget, subject_request) is None or at_ms < self.since_ms.get(budget.name, 0):
                continue
            period = period_of(budget, at_ms)
            ledger = self.ledgers.setdefault((budget.name, usage["project"], period), Ledger())
            ledger.reserved.pop(usage["request_id"], None)
            if not ledger.charge(budget, usage["request_id"], usage["cost_usd"], at_ms):
                continue
            for threshold in budget.thresholds:
                if ledger.spent >= threshold * budget.usd and threshold not in ledger.crossed:
                    ledger.crossed.add(threshold)
                    crossed.append((budget, f"{period}-{at_ms}" if budget.period == "rolling" else period,
                                    threshold, ledger.spent))
        return crossed
