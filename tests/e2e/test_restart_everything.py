"""Every piece of control-plane state survives killing every process at once (SIGKILL: nothing flushed
or committed on the way out) and starting them again: keys and revocations, teams, templates, limits and
budgets set through the admin API, a rate limit's window, a budget's spend, and its alerts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, OTHER_PROJECT_KEY, start_gateway, write_config
from tests.kafka_events import read_events


def test_every_piece_of_state_survives_killing_every_process(bootstrap: str, openai_mock: str, logs: Path,
                                                              tmp_path: Path) -> None:
    gateway = start_gateway(bootstrap, write_config(tmp_path / "gateway.yaml", openai_mock), logs)

    def admin(method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = httpx.request(method, gateway.url + path, json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code < 300, response.text
        return response

    def chat(key: str, **body: Any) -> httpx.Response:
        return httpx.post(gateway.url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": "gpt-4o", "max_tokens": 10, **body})

    try:
        admin("POST", "/v1/admin/teams", {"team": "core", "project": "proj-a"})
        time.sleep(0.3)
        kept = admin("POST", "/v1/admin/keys", {"project": "proj-a", "team": "core"}).json()
        revoked = admin("POST", "/v1/admin/keys", {"project": "proj-a"}).json()
        admin("DELETE", f"/v1/admin/keys/{revoked['key_id']}")
        for text in ("Hi {{ name }}", "Hello {{ name }}!"):
            admin("POST", "/v1/admin/templates", {"name": "greet", "messages": [{"role": "user", "content": text}]})
        admin("POST", "/v1/admin/limits", {"id": "one-a-minute", "scope": "key", "match": kept["key_id"],
                                           "requests_per_minute": 1, "burst": 2})
        admin("POST", "/v1/admin/budgets", {"name": "tiny", "project": "proj-b", "usd": 0.0002, "period": "month"})
        time.sleep(1.0)
        assert [chat(kept["key"], messages=[{"role": "user", "content": f"{i}"}]).status_code
                for i in range(3)] == [200, 200, 429]
        spent = [chat(OTHER_PROJECT_KEY, messages=[{"role": "user", "content": f"spend {i}"}]).status_code
                 for i in range(6)]
        assert spent[0] == 200 and spent[-1] == 429
        time.sleep(1.5)  # the last usage settles and the alerts are announced
        alerts = [a for _, a in read_events(bootstrap, gateway.topics.budget_alerts) if a["budget"] == "tiny"]
        assert sorted(a["threshold"] for a in alerts) == [0.5, 0.8, 1.0]

        for process in (gateway.ingress, gateway.router):
            assert process is not None
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        gateway.start_router()
        gateway.start_ingress(int(gateway.url.rsplit(":", 1)[1]))
        gateway.wait_ready()
        time.sleep(3)  # the gatekeeper's group settles on the new router

        limited = chat(kept["key"], messages=[{"role": "user", "content": "after"}])
        assert limited.status_code == 429, (limited.headers, time.time())  # the window held
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert chat(revoked["key"], messages=[{"role": "user", "content": "x"}]).json()["error"]["code"] == \
            "revoked_api_key"
        assert admin("GET", "/v1/admin/teams/core").json()["keys"] == [kept["key_id"]]
        greeted = chat(GATEWAY_KEY, prompt_id="greet", variables={"name": "Ada"})
        assert greeted.json()["content"] == "Hello from the mock! You said: Hello Ada!"
        assert chat(OTHER_PROJECT_KEY, messages=[{"role": "user", "content": "more"}]).json()["error"]["code"] == \
            "budget_exceeded"
        assert "one-a-minute" in {limit["id"] for limit in admin("GET", "/v1/admin/limits").json()["data"]}
        time.sleep(1.0)
        again = [a for _, a in read_events(bootstrap, gateway.topics.budget_alerts) if a["budget"] == "tiny"]
        assert len(again) == 3  # nothing announced twice
    finally:
        for process in (gateway.ingress, gateway.router):
            if process is not None and process.poll() is None:
                process.kill()
