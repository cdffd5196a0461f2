"""Routes as virtual models through the real path: the OpenAI SDK fails over by naming a route, a stalled
target is hedged, a rule reads metadata from a header, and the routes file changes (or breaks) while
requests flow without dropping one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, Gateway, start_gateway, stop_process, write_config

ROUTES = {"routes": {
    "smart": {"strategy": "fallback", "targets": [
        {"provider": "openai", "model": "gpt-4o-fail-500", "name": "primary", "catalog": "gpt-4o"},
        {"provider": "openai", "model": "gpt-4o", "name": "backup"}]},
    "hedged": {"strategy": "fallback", "hedge_after_ms": 200, "targets": [
        {"provider": "openai", "model": "gpt-4o-stall-3", "name": "stalled", "catalog": "gpt-4o"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "quick"}]},
    "hedged-failing": {"strategy": "fallback", "hedge_after_ms": 500, "targets": [
        {"provider": "openai", "model": "gpt-4o-fail-500", "name": "failing", "catalog": "gpt-4o"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "quick"}]},
    "impatient": {"deadline_s": 0.5, "targets": [
        {"provider": "openai", "model": "gpt-4o-stall-3", "name": "slow", "catalog": "gpt-4o"}]},
    "moves-on": {"retry_same_on": [], "targets": [
        {"provider": "openai", "model": "gpt-4o-fail-500", "name": "failing", "catalog": "gpt-4o"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "next"}]},
    "thrifty": {"strategy": "cheapest", "targets": [
        {"provider": "openai", "model": "gpt-4o"}, {"provider": "openai", "model": "gpt-4o-mini"}]},
    "support-bot": {"strategy": "rules", "default": "thrifty", "targets": [
        {"provider": "openai", "model": "gpt-4o", "name": "vip"}],
        "rules": [{"when": {"metadata.tier": "gold"}, "then": "vip"}]},
    "swap": {"targets": [{"provider": "openai", "model": "gpt-4o", "name": "before"}]},
    "shadowed": {"targets": [{"provider": "openai", "model": "gpt-4o", "name": "from-file"}]},
}}


@pytest.fixture(scope="module")
def routed(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("routes")
    (home / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    config = write_config(home / "gateway.yaml", openai_mock)
    raw = yaml.safe_load(config.read_text())
    raw["routes_file"] = "routes.yaml"
    config.write_text(yaml.safe_dump(raw))
    gateway = start_gateway(bootstrap, config, logs)
    yield gateway
    gateway.stop()


def _sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


def _ask(gateway: Gateway, model: str, text: str = "hi", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/gateway/chat", timeout=30,
                      headers={"Authorization": f"Bearer {GATEWAY_KEY}", **(headers or {})},
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def test_the_openai_sdk_fails_over_by_naming_a_route(routed: Gateway) -> None:
    raw = _sdk(routed).chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "route me"}])
    answer = raw.parse()

    assert answer.choices[0].message.content == "Hello from the mock! You said: route me"
    assert (raw.headers["x-gateway-route"], raw.headers["x-gateway-strategy"]) == ("smart", "fallback")
    assert raw.headers["x-gateway-target"] == "openai/backup" and int(raw.headers["x-gateway-attempts"]) >= 2
    usage = routed.events(routed.topics.usage, raw.headers["x-request-id"])[0]
    assert (usage["route"], usage["strategy"], usage["model"]) == ("smart", "fallback", "backup")
    attempts = routed.events(routed.topics.attempts, raw.headers["x-request-id"], expect=3)
    assert [a["upstream_model"] for a in attempts][-1] == "gpt-4o" and {a["route"] for a in attempts} == {"smart"}


def test_the_openai_body_takes_a_fallback_list(routed: Gateway) -> None:
    answer = _sdk(routed).chat.completions.create(model="flaky-500", messages=[{"role": "user", "content": "fb"}],
                                                  extra_body={"fallback": ["gpt-4o"]})
    assert answer.choices[0].message.content == "Hello from the mock! You said: fb"


def test_a_stalled_target_is_hedged_after_the_hedge_delay(routed: Gateway) -> None:
    started = time.monotonic()
    response = _ask(routed, "hedged", "race")
    took = time.monotonic() - started

    assert response.status_code == 200 and response.headers["x-gateway-target"] == "openai/quick"
    assert took < 1.5  # the hedge delay plus the healthy path, not the stall of 3 s
    attempts = routed.events(routed.topics.attempts, response.headers["x-request-id"], expect=2)
    assert sorted((a["upstream_model"], a["outcome"], a["error_kind"]) for a in attempts) == [
        ("gpt-4o-mini", "ok", None), ("gpt-4o-stall-3", "error", "timeout")]  # a first-byte timeout, in effect


def test_a_target_that_fails_before_the_hedge_delay_falls_over_to_the_next(routed: Gateway) -> None:
    response = _ask(routed, "hedged-failing", "fail fast")
    assert response.status_code == 200 and response.headers["x-gateway-target"] == "openai/quick"


def test_a_routes_deadline_and_which_errors_retry_the_same_target(routed: Gateway) -> None:
    started = time.monotonic()
    late = _ask(routed, "impatient")
    assert late.status_code == 504 and time.monotonic() - started < 1.5
    moved = _ask(routed, "moves-on")
    attempts = routed.events(routed.topics.attempts, moved.headers["x-request-id"], expect=2)
    assert [a["upstream_model"] for a in attempts] == ["gpt-4o-fail-500", "gpt-4o-mini"]  # no second try of it


def test_cheapest_and_rules_pick_what_they_should(routed: Gateway) -> None:
    assert _ask(routed, "thrifty").headers["x-gateway-target"] == "openai/gpt-4o-mini"
    gold = _ask(routed, "support-bot", headers={"x-gateway-meta-tier": "gold"})
    assert gold.headers["x-gateway-target"] == "openai/vip" and gold.headers["x-gateway-strategy"] == "rules"
    plain = _ask(routed, "support-bot")
    assert plain.headers["x-gateway-target"] == "openai/gpt-4o-mini"
    assert plain.headers["x-gateway-route"] == "thrifty"  # the nested route that chose it


def test_a_route_file_change_applies_while_requests_flow_and_a_bad_one_is_refused(routed: Gateway) -> None:
    routes_file = Path(routed.env["GATEWAY_CONFIG"]).parent / "routes.yaml"
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def flow() -> None:
        while not stop.is_set():
            response = _ask(routed, "swap")
            answers.append((response.status_code, response.headers.get("x-gateway-target", "")))

    worker = threading.Thread(target=flow)
    worker.start()
    time.sleep(1.0)
    changed: dict[str, Any] = yaml.safe_load(yaml.safe_dump(ROUTES))
    changed["routes"]["swap"]["targets"][0]["name"] = "after"
    routes_file.write_text(yaml.safe_dump(changed))
    time.sleep(3.0)
    routes_file.write_text("routes: {swap: {strategy: nonsense}}")  # refused: "after" keeps serving
    time.sleep(2.5)
    stop.set()
    worker.join()
    routes_file.write_text(yaml.safe_dump(ROUTES))

    assert {status for status, _ in answers} == {200}  # none dropped
    targets = [target for _, target in answers]
    assert targets[0] == "openai/before" and targets[-1] == "openai/after"
    first_after = targets.index("openai/after")
    assert set(targets[first_after:]) == {"openai/after"}
    assert "routes file" in (routed.logs / "router.log").read_text()


def test_an_unknown_route_or_a_request_no_target_can_serve_is_a_clear_4xx(routed: Gateway) -> None:
    unknown = _ask(routed, "no-such-route")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"


def test_a_stalled_stream_is_hedged_and_only_the_winner_streams(routed: Gateway) -> None:
    started = time.monotonic()
    raw = _sdk(routed).chat.completions.with_raw_response.create(
        model="hedged", messages=[{"role": "user", "content": "stream the race"}], stream=True)
    chunks = list(raw.parse())
    took = time.monotonic() - started

    assert took < 1.5  # the hedge delay plus the healthy path, not the stall of 3 s
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello from the mock! You said: stream the race"
    attempts = routed.events(routed.topics.attempts, raw.headers["x-request-id"], expect=2)
    assert sorted((a["upstream_model"], a["error_kind"]) for a in attempts) == [
        ("gpt-4o-mini", None), ("gpt-4o-stall-3", "timeout")]


def _admin(gateway: Gateway, method: str, path: str, key: str = ADMIN_KEY, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, gateway.url + "/v1/admin/routes" + path, timeout=30,
                         headers={"Authorization": f"Bearer {key}"}, **kwargs)


def _target_soon(gateway: Gateway, model: str, expected: str) -> httpx.Response:
    """Ask until the answer comes from `expected` (the routers take a change within a second)."""
    deadline = time.monotonic() + 1.5
    while True:
        response = _ask(gateway, model)
        if response.headers.get("x-gateway-target") == expected or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_routes_set_through_the_admin_api_serve_outlive_a_router_restart_and_are_removed(routed: Gateway) -> None:
    spec = {"targets": [{"provider": "openai", "model": "gpt-4o-fail-500", "name": "first", "catalog": "gpt-4o"},
                        {"provider": "openai", "model": "gpt-4o-mini", "name": "second"}]}
    put = _admin(routed, "PUT", "/api-smart", json=spec)
    assert put.status_code == 200 and (put.json()["name"], put.json()["source"]) == ("api-smart", "api")
    answer = _target_soon(routed, "api-smart", "openai/second")
    assert answer.status_code == 200 and answer.headers["x-gateway-route"] == "api-smart"
    assert routed.events(routed.topics.usage, answer.headers["x-request-id"])[0]["route"] == "api-smart"

    shadow = {"targets": [{"provider": "openai", "model": "gpt-4o-mini", "name": "from-api"}]}
    assert _admin(routed, "PUT", "/shadowed", json=shadow).status_code == 200
    assert _target_soon(routed, "shadowed", "openai/from-api").headers["x-gateway-target"] == "openai/from-api"
    listed = {r["name"]: r["source"] for r in _admin(routed, "GET", "").json()["data"]}
    assert (listed["api-smart"], listed["shadowed"], listed["smart"]) == ("api", "api", "file")
    models = {m.id: m.owned_by for m in _sdk(routed).models.list()}
    assert models["api-smart"] == models["smart"] == "gateway-route" and models["gpt-4o"] == "openai"

    assert routed.router is not None
    stop_process(routed.router)
    routed.start_router()  # its routes come back from the routes topic
    assert _target_soon(routed, "api-smart", "openai/second").headers.get("x-gateway-target") == "openai/second"

    removed = _admin(routed, "DELETE", "/shadowed")
    assert removed.status_code == 200 and removed.json()["source_now"] == "file"
    assert _target_soon(routed, "shadowed", "openai/from-file").headers["x-gateway-target"] == "openai/from-file"
    assert _admin(routed, "DELETE", "/api-smart").status_code == 200
    gone = _ask(routed, "api-smart")
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "model"
    from_file = _admin(routed, "DELETE", "/smart")
    assert from_file.status_code == 404 and "routes file" in from_file.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"targets": [{"provider": "openai"}]}, 400, "targets.0.model"),
    ({"strategy": "fastes", "targets": [{"provider": "openai", "model": "gpt-4o"}]}, 400, "strategy"),
    ({"strategy": "rules", "default": "x", "rules": [{"when": {"colour": "red"}, "then": "x"}]}, 400,
     "rules.0.when.colour"),
    ({"strategy": "rules", "rules": [{"when": {"user": "a"}, "then": "x"}]}, 400, None),
    (b"{not json", 400, None),
])
def test_a_bad_route_is_a_400_naming_its_field(routed: Gateway, body: Any, status: int, param: str | None) -> None:
    response = _admin(routed, "PUT", "/refused", **({"content": body} if isinstance(body, bytes) else {"json": body}))
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert _admin(routed, "GET", "/refused").status_code == 404


def test_only_an_admin_key_sets_routes(routed: Gateway) -> None:
    spec = {"targets": [{"provider": "openai", "model": "gpt-4o"}]}
    assert _admin(routed, "PUT", "/mine", GATEWAY_KEY, json=spec).status_code == 403
    assert _admin(routed, "GET", "", "sk-nobody").status_code == 401
