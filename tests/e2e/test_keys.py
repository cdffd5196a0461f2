"""Gateway keys as state on the log: created through the admin API, honoured by every ingress instance,
revoked everywhere within a second, expiring, limited to models, surviving restarts; shown once."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, Gateway, free_port, stop_process, wait_for_port
from tests.kafka_events import read_events


def _admin(gateway: Gateway, method: str, path: str, key: str = ADMIN_KEY, **body: Any) -> httpx.Response:
    return httpx.request(method, gateway.url + path, headers={"Authorization": f"Bearer {key}"},
                         json=body or None, timeout=10)


def _chat(url: str, key: str, model: str = "gpt-4o") -> httpx.Response:
    return httpx.post(url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "with my new key"}]})


@pytest.fixture
def second_ingress(gateway: Gateway) -> Any:
    port = free_port()
    with open(gateway.logs / "ingress-keys.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.cli", "ingress", "--port", str(port)],
                                   env=gateway.env, stdout=log, stderr=log)
    wait_for_port(port, process)
    time.sleep(0.5)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def test_a_created_key_works_everywhere_until_it_is_revoked_everywhere(gateway: Gateway, second_ingress: str) -> None:
    assert _admin(gateway, "POST", "/v1/admin/teams", team="ml", project="proj-b").status_code == 201
    created = _admin(gateway, "POST", "/v1/admin/keys", project="proj-b", team="ml", user="u1",
                     allowed_models=["gpt-4o"], metadata={"owner": "billing team"})
    assert created.status_code == 201, created.text
    secret, key_id = created.json()["key"], created.json()["key_id"]
    assert "digest" not in created.json()

    for url in (gateway.url, second_ingress):
        answered = _chat(url, secret)
        assert answered.status_code == 200
    usage = gateway.events(gateway.topics.usage, answered.json()["id"])[0]
    assert (usage["project"], usage["team"], usage["user"]) == ("proj-b", "ml", "u1")  # the key speaks for them
    refused = _chat(gateway.url, secret, "gpt-4o-mini")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    listed = _admin(gateway, "GET", "/v1/admin/keys?project=proj-b").json()["data"]
    assert [k["key_id"] for k in listed if k["key_id"] == key_id] == [key_id] and "key" not in listed[0]

    assert _admin(gateway, "DELETE", f"/v1/admin/keys/{key_id}").json()["revoked_at_ms"] is not None
    time.sleep(1.0)
    for url in (gateway.url, second_ingress):
        response = _chat(url, secret)
        assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"
    assert secret not in repr(read_events(gateway.bootstrap, gateway.topics.keys))


def test_a_key_expires(gateway: Gateway) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    secret = _admin(gateway, "POST", "/v1/admin/keys", project="proj-a", expires_at=expires).json()["key"]

    assert _chat(gateway.url, secret).status_code == 200
    time.sleep(2.2)
    response = _chat(gateway.url, secret)
    assert response.status_code == 401 and response.json()["error"]["code"] == "expired_api_key"


def test_keys_survive_a_restart_of_the_ingress(gateway: Gateway) -> None:
    secret = _admin(gateway, "POST", "/v1/admin/keys", project="proj-a").json()["key"]
    assert gateway.ingress is not None
    stop_process(gateway.ingress)
    gateway.start_ingress(int(gateway.url.rsplit(":", 1)[1]))
    gateway.wait_ready()

    assert _chat(gateway.url, secret).status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "status", "param"), [
    ("POST", "/v1/admin/keys", {"user": "x"}, 400, "project"),
    ("POST", "/v1/admin/keys", {"project": "p", "colour": "red"}, 400, "colour"),
    ("POST", "/v1/admin/keys", {"project": "p", "expires_at": "2001-01-01T00:00:00Z"}, 400, "expires_at"),
    ("POST", "/v1/admin/keys", {"project": "p", "expires_at": "soon"}, 400, "expires_at"),
    ("DELETE", "/v1/admin/keys/key_nope", {}, 404, "key_id"),
    ("POST", "/v1/admin/keys", {"project": "p", "team": "no-such-team"}, 404, "team"),
    ("POST", "/v1/admin/teams", {"team": "a team with spaces", "project": "p"}, 400, "team"),
    ("POST", "/v1/admin/teams", {"team": "t"}, 400, "project"),
    ("DELETE", "/v1/admin/teams/no-such-team", {}, 404, "team"),
    ("PATCH", "/v1/admin/keys/key_nope", {"metadata": {}}, 404, "key_id"),
])
def test_bad_admin_input_gets_a_clear_4xx(gateway: Gateway, method: str, path: str, body: dict[str, Any],
                                          status: int, param: str) -> None:
    response = _admin(gateway, method, path, **body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_a_non_admin_key_cannot_administer(gateway: Gateway) -> None:
    response = _admin(gateway, "POST", "/v1/admin/keys", key=GATEWAY_KEY, project="proj-a")

    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_the_cli_creates_lists_and_revokes_keys(gateway: Gateway) -> None:
    env = {**gateway.env, "GATEWAY_URL": gateway.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra.cli", "keys", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    created = cli("create", "--project", "proj-a", "--models", "gpt-4o", "--expires-in", "30d")
    assert created.returncode == 0, created.stderr
    secret, key_id = created.stdout.split()[0], created.stdout.split("key id ")[1].split(";")[0]
    assert _chat(gateway.url, secret).status_code == 200
    assert key_id in cli("list", "--project", "proj-a").stdout
    assert cli("revoke", key_id).returncode == 0
    time.sleep(1.0)
    assert _chat(gateway.url, secret).status_code == 401
    bad = cli("create", "--project", "proj-a", "--expires-in", "soon")
    assert bad.returncode != 0 and "--expires-in" in bad.stderr


def test_a_team_groups_keys_of_one_project_and_goes_once_its_keys_are_revoked(gateway: Gateway) -> None:
    assert _admin(gateway, "POST", "/v1/admin/teams", team="search", project="proj-a",
                  metadata={"lead": "ana"}).status_code == 201
    time.sleep(0.3)
    elsewhere = _admin(gateway, "POST", "/v1/admin/keys", project="proj-b", team="search")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["param"] == "team"
    moved = _admin(gateway, "POST", "/v1/admin/teams", team="search", project="proj-b")
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "team_in_other_project"
    key_id = _admin(gateway, "POST", "/v1/admin/keys", project="proj-a", team="search").json()["key_id"]
    time.sleep(0.3)
    team = _admin(gateway, "GET", "/v1/admin/teams/search").json()
    assert (team["project"], team["metadata"], team["keys"]) == ("proj-a", {"lead": "ana"}, [key_id])
    assert "search" in [t["team"] for t in _admin(gateway, "GET", "/v1/admin/teams?project=proj-a").json()["data"]]

    refused = _admin(gateway, "DELETE", "/v1/admin/teams/search")
    assert refused.status_code == 409 and key_id in refused.json()["error"]["message"]
    _admin(gateway, "DELETE", f"/v1/admin/keys/{key_id}")
    time.sleep(0.3)
    assert _admin(gateway, "DELETE", "/v1/admin/teams/search").status_code == 200
    time.sleep(0.3)
    assert _admin(gateway, "GET", "/v1/admin/teams/search").status_code == 404
    assert "search" not in [t["team"] for t in _admin(gateway, "GET", "/v1/admin/teams").json()["data"]]


def test_the_cli_sets_lists_and_removes_teams(gateway: Gateway) -> None:
    env = {**gateway.env, "GATEWAY_URL": gateway.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra.cli", "teams", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    assert cli("set", '{"team": "cli-team", "project": "proj-a"}').returncode == 0
    time.sleep(0.3)
    assert "cli-team" in cli("list").stdout
    assert cli("remove", "cli-team").returncode == 0
    bad = cli("set", '{"team": "x"}')
    assert bad.returncode != 0 and "project" in bad.stderr
