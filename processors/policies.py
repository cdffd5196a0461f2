"""Rate limits and budgets set through the admin API: `PolicyChanged` events on the compacted `policies`
topic, folded by every gatekeeper (which enforces them) and every ingress (which sends governed projects
through the gatekeeper) into the same `Policies` the configuration starts with."""

from __future__ import annotations

import time
from typing import Any

import orjson

from infra.config import Budget, Limit, Settings
from infra.log_view import Change, LogView
from processors.limits import Policies

EVENT = "PolicyChanged"


def fold_policy(policies: Policies, change: Change) -> None:
    record = change.record
    if record is None:
        return
    spec = orjson.loads(record["spec_json"]) if record["spec_json"] else None
    if record["kind"] == "limit":
        policies.set_limit(record["id"], Limit.model_validate(spec) if spec else None)
    elif record["kind"] == "budget":
        policies.set_budget(record["id"], Budget.model_validate(spec) if spec else None,
                            record["counts_from_ms"] or record["changed_at_ms"])


def policies_view(settings: Settings, policies: Policies) -> LogView[Policies]:
    return LogView(settings.bootstrap_servers, settings.topics.policies, fold_policy, policies,
                   settings.config.kafka)


async def publish(view: LogView[Policies], kind: str, policy_id: str, spec: dict[str, Any] | None) -> None:
    now_ms = time.time_ns() // 1_000_000
    counts_from_ms = view.state.since_ms.get(policy_id, now_ms) if kind == "budget" and spec is not None else None
    await view.publish(f"{kind}:{policy_id}".encode(), EVENT, {
        "kind": kind, "id": policy_id, "spec_json": orjson.dumps(spec).decode() if spec is not None else None,
        "changed_at_ms": now_ms, "counts_from_ms": counts_from_ms})
