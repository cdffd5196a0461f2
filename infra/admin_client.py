"""`gateway keys ...`: the admin API from the command line (GATEWAY_URL, default http://127.0.0.1:8080, and
GATEWAY_ADMIN_KEY, a key marked admin: true)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}


def expiry(text: str | None) -> str | None:
    """'30d', '12h', '90m' from now, as an ISO time."""
    if text is None:
        return None
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isdigit():
        raise SystemExit(f"gateway keys: --expires-in is a number and a unit (m, h, d), such as 30d, not {text!r}")
    return (datetime.now(UTC) + timedelta(seconds=int(number) * DURATION_UNITS[unit])).isoformat()


def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080")
    key = os.environ.get("GATEWAY_ADMIN_KEY")
    if not key:
        raise SystemExit("gateway keys: set GATEWAY_ADMIN_KEY to a gateway key marked admin: true")
    try:
        response = httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30)
    except httpx.HTTPError as exc:
        raise SystemExit(f"gateway keys: cannot reach the gateway at {url} ({exc}); set GATEWAY_URL") from None
    if response.status_code >= 400:
        print(f"gateway keys: {response.json()['error']['message']}", file=sys.stderr)
        raise SystemExit(1)
    return response.json()


def keys_command(action: str, project: str | None, user: str | None, team: str | None, models: str | None,
                 expires_in: str | None, key_id: str | None) -> None:
    if action == "create":
        if not project:
            raise SystemExit("gateway keys create: --project is required")
        body = {"project": project, "user": user, "team": team, "expires_at": expiry(expires_in),
                "allowed_models": [m for m in (models or "").split(",") if m]}
        created = call("POST", "/v1/admin/keys", {k: v for k, v in body.items() if v not in (None, [])})
        print(f"{created['key']}\n(key id {created['key_id']}; the key is shown this once)")
    elif action == "list":
        for key in call("GET", "/v1/admin/keys" + (f"?project={project}" if project else ""))["data"]:
            print(json.dumps(key))
    else:
        if not key_id:
            raise SystemExit("gateway keys revoke: name the key id")
        call("DELETE", f"/v1/admin/keys/{key_id}")
        print(f"revoked {key_id}")


EXAMPLES = {
    "teams": '{"team": "ml", "project": "research"}',
    "limits": '{"id": "burst", "scope": "key", "requests_per_minute": 60}',
    "budgets": '{"name": "monthly", "usd": 100, "period": "month"}',
    "templates": '{"name": "support", "messages": [{"role": "user", "content": "{{ q }}"}]}',
}


def policy_command(kind: str, action: str, spec: str | None, name: str | None) -> None:
    """`gateway teams|limits|budgets|templates set|list|remove`: the spec is the JSON body the admin API takes."""
    path = f"/v1/admin/{kind}"
    if action == "list":
        for item in call("GET", path)["data"]:
            print(json.dumps(item))
        return
    if action == "set":
        if not spec:
            raise SystemExit(f"gateway {kind} set: give the {kind[:-1]} as JSON, e.g. '{EXAMPLES[kind]}'")
        try:
            body = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"gateway {kind} set: the {kind[:-1]} is not JSON ({exc})") from None
        print(json.dumps(call("POST", path, body)))
        return
    if not name or kind == "templates":
        raise SystemExit(f"gateway {kind} remove: name the {kind[:-1]}" if kind != "templates"
                         else "gateway templates: versions are withdrawn with PATCH "
                              "/v1/admin/templates/{name}/versions/{n}, not removed")
    call("DELETE", f"{path}/{name}")
    print(f"removed {kind[:-1]} {name}")
