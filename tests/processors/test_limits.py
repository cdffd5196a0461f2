"""Rate limits and budgets as pure state: what is admitted, refused, settled and announced."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import Budget, Limit
from processors.limits import Policies

NOW_MS = 1_790_000_000_000


def request(i: int, project: str = "p", key: str = "k1") -> dict[str, Any]:
    return {"request_id": f"r{i}", "project": project, "key_id": key, "user": None, "model": "gpt-4o",
            "messages": [{"role": "user", "content": "x" * 40}]}


def usage(i: int, cost: float, project: str = "p") -> dict[str, Any]:
    return {"request_id": f"r{i}", "project": project, "key_id": "k1", "user": None, "model": "gpt-4o",
            "completion_tokens": 5, "cost_usd": cost, "recorded_at_ms": NOW_MS}


def test_requests_per_minute_with_a_burst_then_a_retry_after() -> None:
    policies = Policies([Limit(scope="key", requests_per_minute=60, burst=3)], [])

    assert [policies.admit(request(i), 0, 0.0, NOW_MS) for i in range(3)] == [None] * 3
    refused = policies.admit(request(3), 0, 0.0, NOW_MS)
    assert refused is not None and refused.code == "rate_limited" and refused.retry_after_s == pytest.approx(1.0)
    assert policies.admit(request(4, key="k2"), 0, 0.0, NOW_MS) is None  # another key has its own bucket
    assert policies.admit(request(5), 0, 1.0, NOW_MS) is None  # a second later, one more


def test_a_hard_budget_reserves_then_refuses_and_charges_each_request_once() -> None:
    budget = Budget(name="b", project="p", usd=1.0, period="month")
    policies = Policies([], [budget])

    assert policies.admit(request(1), 0.6, 0.0, NOW_MS) is None
    assert policies.admit(request(2), 0.6, 0.0, NOW_MS) is None  # 0.6 reserved < 1.0: admitted
    refused = policies.admit(request(3), 0.6, 0.0, NOW_MS)
    assert refused is not None and refused.code == "budget_exceeded"  # reserved 1.2 >= 1.0
    crossed = policies.settle(usage(1, 0.55), 0.0)
    assert [c[2] for c in crossed] == [0.5]
    assert policies.settle(usage(1, 0.55), 0.0) == []  # delivered twice, charged once
    ledger = policies.ledger(budget, "p", NOW_MS)
    assert ledger.spent == pytest.approx(0.55) and set(ledger.reserved) == {"r2"}
    assert [c[2] for c in policies.settle(usage(2, 0.5), 0.0)] == [0.8, 1.0]
    assert policies.admit(request(4), 0.01, 0.0, NOW_MS).code == "budget_exceeded"  # type: ignore[union-attr]


def test_a_soft_budget_only_alerts_and_other_projects_are_not_counted() -> None:
    policies = Policies([], [Budget(name="soft", project="p", usd=1.0, period="day", hard=False)])

    assert policies.settle(usage(1, 2.0), 0.0)[-1][2] == 1.0
    assert policies.admit(request(2), 1.0, 0.0, NOW_MS) is None
    assert policies.settle(usage(3, 5.0, project="q"), 0.0) == []
    assert policies.projects() == {"p"}


def test_a_team_budget_counts_the_requests_of_its_teams_keys_only() -> None:
    policies = Policies([], [Budget(name="ml", scope="team", match="ml", usd=1.0, period="month")])
    ml, other = {**request(1), "team": "ml"}, {**request(2), "team": "web"}

    assert policies.admit(ml, 1.0, 0.0, NOW_MS) is None
    assert policies.admit({**ml, "request_id": "r3"}, 1.0, 0.0, NOW_MS).code == "budget_exceeded"  # type: ignore[union-attr]
    assert policies.admit(other, 1.0, 0.0, NOW_MS) is None  # another team is not counted


def test_a_rolling_budget_forgets_charges_a_window_later_and_can_alert_again() -> None:
    budget = Budget(name="r", project="p", usd=1.0, period="rolling", window_hours=1)
    policies = Policies([], [budget])
    hour = 3_600_000

    def spend(i: int, cost: float, at_ms: int) -> list[float]:
        return [c[2] for c in policies.settle({**usage(i, cost), "recorded_at_ms": at_ms}, 0.0)]

    assert spend(1, 0.6, NOW_MS) == [0.5]
    assert spend(2, 0.5, NOW_MS + hour // 2) == [0.8, 1.0]
    assert policies.admit(request(3), 0.0, 0.0, NOW_MS + hour // 2).code == "budget_exceeded"  # type: ignore[union-attr]
    # An hour after the first charge it leaves the window: 0.5 spent, the request is admitted again.
    assert policies.admit(request(4), 0.1, 0.0, NOW_MS + hour + 1) is None
    assert spend(2, 0.5, NOW_MS + hour // 2) == []  # a charge delivered twice still counts once
    assert spend(5, 0.2, NOW_MS + hour + 2) == []  # 0.7: 0.5 is still crossed, 0.8 and 1.0 re-armed
    crossed = policies.settle({**usage(6, 0.35), "recorded_at_ms": NOW_MS + hour + 3}, 0.0)
    assert [(c[1], c[2]) for c in crossed] == [(f"rolling-1h-{NOW_MS + hour + 3}", 0.8),
                                              (f"rolling-1h-{NOW_MS + hour + 3}", 1.0)]
    assert spend(7, 1.0, NOW_MS - 1) == []  # recorded before the window: not spent now


def test_a_rolling_budget_needs_a_window_and_only_it_has_one() -> None:
    with pytest.raises(ValueError, match="needs window_hours"):
        Budget(name="r", usd=1.0, period="rolling")
    with pytest.raises(ValueError, match="only a rolling budget"):
        Budget(name="r", usd=1.0, period="day", window_hours=24)


def test_a_budget_set_later_counts_usage_from_its_setting_on_live_and_restored_alike() -> None:
    budget = Budget(name="later", project="p", usd=1.0, period="rolling", window_hours=1)
    for settled_before_it_came in (True, False):  # live: settled before the budget came; restored: after
        policies = Policies([], [])
        if settled_before_it_came:
            policies.settle({**usage(1, 0.9), "recorded_at_ms": NOW_MS - 10}, 0.0)
        policies.set_budget("later", budget, since_ms=NOW_MS)
        if not settled_before_it_came:
            policies.settle({**usage(1, 0.9), "recorded_at_ms": NOW_MS - 10}, 0.0)
        assert policies.admit(request(2), 0.0, 0.0, NOW_MS + 5) is None  # the earlier 0.9 is not counted
        policies.settle({**usage(3, 1.0), "recorded_at_ms": NOW_MS + 5}, 0.0)
        assert policies.admit(request(4), 0.0, 0.0, NOW_MS + 6).code == "budget_exceeded"  # type: ignore[union-attr]
        policies.set_budget("later", budget.model_copy(update={"usd": 2.0}), since_ms=NOW_MS + 6)
        assert policies.since_ms["later"] == NOW_MS  # a change keeps what it counts from
