"""Route strategies on requests built to tell them apart, the condition language, and the routes file."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from infra.config import GatewayConfig, RouteSpec
from processors.catalog import load_catalog
from processors.routes import RouteBook, RouteError, facts, holds, order, read
from processors.routing import RouteTable

CATALOG = load_catalog().models


def _request(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"project": "p", "model": "r", "messages": [{"role": "user", "content": text}], **extra}


def _spec(strategy: str, *models: str, **extra: Any) -> RouteSpec:
    return RouteSpec.model_validate({"strategy": strategy, "targets": [
        {"provider": "openai" if m.startswith(("gpt", "o")) else "anthropic", "model": m} for m in models], **extra})


def _labels(spec: RouteSpec, request: dict[str, Any], latency: Any = lambda p, m: None,
            healthy: Any = lambda p, m: True, seed: int = 1) -> list[str]:
    return [t.label for t, _ in order("r", spec, request, CATALOG, latency, healthy, random.Random(seed)).targets]


def test_fallback_keeps_the_listed_order() -> None:
    assert _labels(_spec("fallback", "gpt-4o", "claude-sonnet-4-20250514"), _request()) == \
        ["gpt-4o", "claude-sonnet-4-20250514"]


def test_loadbalance_follows_the_weights_and_puts_open_circuits_last() -> None:
    spec = RouteSpec.model_validate({"strategy": "loadbalance", "targets": [
        {"provider": "openai", "model": "gpt-4o", "name": "east", "weight": 3},
        {"provider": "openai", "model": "gpt-4o", "name": "west", "weight": 1}]})
    firsts = Counter(_labels(spec, _request(), seed=i)[0] for i in range(2000))
    assert 0.70 < firsts["east"] / 2000 < 0.80

    spec2 = _spec("loadbalance", "gpt-4o", "gpt-4o-mini")
    assert all(_labels(spec2, _request(), healthy=lambda p, m: m != "gpt-4o", seed=i)[0] == "gpt-4o-mini"
               for i in range(50))


def test_cheapest_orders_by_the_requests_expected_cost_among_those_that_can_serve_it() -> None:
    spec = _spec("cheapest", "gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-20241022")
    assert _labels(spec, _request())[0] == "gpt-4o-mini"
    huge = _request("x" * 4 * 150_000)  # 150k tokens: past the 128k windows of both GPTs
    assert _labels(spec, huge)[0] == "claude-3-5-haiku-20241022"


def test_capability_refuses_a_request_no_target_can_serve() -> None:
    spec = _spec("capability", "gpt-4o-mini", "gpt-4o")
    assert _labels(spec, _request())[0] == "gpt-4o-mini"
    with pytest.raises(RouteError, match="context of"):
        order("r", spec, _request("x" * 4 * 200_000), CATALOG, lambda p, m: None, lambda p, m: True, random.Random())


def test_fastest_prefers_the_lower_median_tries_the_unmeasured_and_explores() -> None:
    spec = _spec("fastest", "gpt-4o", "gpt-4o-mini", exploration=0.0)
    medians = {"gpt-4o": 300.0, "gpt-4o-mini": 50.0}
    assert _labels(spec, _request(), latency=lambda p, m: medians[m])[0] == "gpt-4o-mini"
    assert _labels(spec, _request(), latency=lambda p, m: None if m == "gpt-4o" else 50.0)[0] == "gpt-4o"
    exploring = _spec("fastest", "gpt-4o", "gpt-4o-mini", exploration=0.2)
    firsts = Counter(_labels(exploring, _request(), latency=lambda p, m: medians[m], seed=i)[0] for i in range(1000))
    assert 0.12 < firsts["gpt-4o"] / 1000 < 0.28


def test_rules_send_a_request_where_its_conditions_hold() -> None:
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-test-12345", "project": "p"}]})
    book = RouteBook(None)
    book.routes = {
        "support-bot": RouteSpec.model_validate({"strategy": "rules", "default": "cheap", "targets": [
            {"provider": "anthropic", "model": "claude-sonnet-4-20250514", "name": "vip"}], "rules": [
            {"when": {"metadata.tier": "gold"}, "then": "vip"},
            {"when": {"complexity": "high"}, "then": "smart"},
            {"when": {"user": {"in": ["ana", "bo"]}, "prompt_tokens": {"lt": 100}}, "then": "gpt-4o"}]}),
        "smart": _spec("fallback", "o3", "gpt-4o"),
        "cheap": _spec("fallback", "gpt-4o-mini"),
    }
    table = RouteTable(config, load_catalog(), book)

    def where(**request: Any) -> list[str]:
        return [t.model for t in table.plan("support-bot", _request(**request), lambda p, m: None,
                                            lambda p, m: True)]

    assert where(metadata={"tier": "gold"}) == ["vip"]
    assert where(text="Prove step by step that the sum of two even numbers is even") == ["o3", "gpt-4o"]
    assert where(user="ana") == ["gpt-4o"]
    assert where(user="cy") == ["gpt-4o-mini"]
    assert table.known("support-bot") and table.supports("smart", "chat")


def test_the_condition_language_compares_without_eval() -> None:
    seen = facts(_request("a" * 800, user="ana", tools=[{"name": "t"}], stream=True))
    assert seen["prompt_tokens"] == 200 and seen["tools"] and seen["stream"]
    assert holds({"prompt_tokens": {"gte": 200}, "tools": True, "user": {"matches": "^a"}}, seen)
    assert not holds({"prompt_tokens": {"gt": 200}}, seen)
    assert not holds({"metadata.tier": "gold"}, seen)
    assert not holds({"prompt_tokens": {"contains": "x"}}, seen)  # a type mismatch is false, not an error


@pytest.mark.parametrize(("text", "named"), [
    ("routes: {smart: {strategy: fallback}}", "routes.smart: Value error, a fallback route needs 'targets'"),
    ("routes: {smart: {strategy: fastes, targets: [{provider: openai, model: gpt-4o}]}}", "routes.smart.strategy"),
    ("routes: {bot: {strategy: rules, default: x, rules: [{when: {colour: red}, then: x}]}}",
     "routes.bot.rules.0.when.colour: unknown field"),
    ("routes: {bot: {strategy: rules, rules: [{when: {user: a}, then: x}]}}", "needs 'rules' and a 'default'"),
    ("routes: {bot: {strategy: rules, default: x, rules: [{when: {user: {like: a}}, then: x}]}}", "routes.bot.rules.0"),
    ("routes: [", "not valid YAML"),
])
def test_a_bad_routes_file_is_refused_naming_the_field(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        read(path)
    assert named in str(raised.value)


def test_a_changed_file_is_taken_and_a_bad_change_keeps_the_old_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes: {smart: {targets: [{provider: openai, model: gpt-4o}]}}")
    book = RouteBook(path)
    assert book.routes["smart"].targets[0].model == "gpt-4o"

    path.write_text("routes: {smart: {targets: [{provider: openai, model: gpt-4o-mini}]}}")
    assert book.reload_if_changed() and book.routes["smart"].targets[0].model == "gpt-4o-mini"
    path.write_text("routes: {smart: {strategy: nonsense}}")
    assert not book.reload_if_changed() and book.routes["smart"].targets[0].model == "gpt-4o-mini"


def test_a_route_set_through_the_api_takes_the_file_routes_place_until_it_is_removed(tmp_path: Path) -> None:
    from infra.log_view import Change
    from processors.route_changes import fold_route

    def changed(name: str, spec: str | None) -> Change:
        return Change(name.encode(), "RouteChanged", {"name": name, "spec_json": spec, "changed_at_ms": 1}, 1, 0, {})

    path = tmp_path / "routes.yaml"
    path.write_text("routes: {smart: {targets: [{provider: openai, model: gpt-4o}]}}")
    book = RouteBook(path)
    fold_route(book, changed("smart", '{"targets": [{"provider": "openai", "model": "o3"}]}'))
    fold_route(book, changed("new", '{"strategy": "cheapest", "targets": [{"provider": "openai", "model": "o3"}]}'))
    assert {name: spec.targets[0].model for name, spec in book.routes.items()} == {"smart": "o3", "new": "o3"}

    path.write_text("routes: {smart: {targets: [{provider: openai, model: gpt-4o-mini}]}}")
    assert book.reload_if_changed() and book.routes["smart"].targets[0].model == "o3"  # the API's stays on top
    fold_route(book, changed("smart", None))
    assert book.routes["smart"].targets[0].model == "gpt-4o-mini" and "new" in book.routes
    with pytest.raises(ValueError, match=r"routes\.new\.strategy"):
        fold_route(book, changed("new", '{"strategy": "nonsense"}'))  # the view skips such a record, loudly
    assert book.routes["new"].strategy == "cheapest"


def test_two_routers_agree_on_a_circuit_through_the_attempts_they_both_read() -> None:
    from infra.log_view import Change
    from processors.circuit import CircuitBreaker
    from processors.health import Health, fold_attempt

    def attempt(i: int, outcome: str) -> dict[str, Any]:
        return {"attempt_id": f"a{i}", "provider": "openai", "model": "m", "upstream_model": "gpt-4o",
                "outcome": outcome, "retryable": outcome == "error", "error_kind": "server_error" if outcome == "error"
                else None, "started_at_ms": int(time.time() * 1000), "duration_ms": 5.0}

    here, there = Health(CircuitBreaker(3, 60)), Health(CircuitBreaker(3, 60))
    for i in range(3):  # three failures seen by the first router: at once here, through the topic there
        made = attempt(i, "error")
        here.observe(made, here=True)
        for health in (here, there):
            fold_attempt(health, Change(b"", "AttemptFinished", made, 0, i, {}))
    now = time.monotonic()
    assert here.breaker.allow(("openai", "gpt-4o"), now) is None
    assert there.breaker.allow(("openai", "gpt-4o"), now) is None  # the other router skips it too
    assert there.latency.median_ms("openai", "gpt-4o") is None
    fold_attempt(there, Change(b"", "AttemptFinished", attempt(9, "ok"), 0, 9, {}))
    assert there.latency.median_ms("openai", "gpt-4o") == 5.0
