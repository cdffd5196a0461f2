"""Gateway keys: those in the configuration, and those created through the admin API, which live as
`GatewayKeyChanged` events on the compacted `keys` topic (a view of the log, `infra/log_view.py`): every
ingress and analytics process folds them into the same state, restores it at start, and sees a
revocation within a second. A key is shown once, at creation; only its SHA-256 is ever stored."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from infra.config import Settings, key_digest
from infra.log_view import Change, LogView
from ingress.auth import INVALID_KEY, Caller, bearer_digest, key_id
from ingress.errors import GatewayError

EVENT = "GatewayKeyChanged"


@dataclass
class Keys:
    """The keys topic folded: records by digest (to authenticate) and by id (to administer)."""

    by_digest: dict[str, dict[str, Any]]
    by_id: dict[str, dict[str, Any]]


def fold_keys(keys: Keys, change: Change) -> None:
    if change.record is None:
        return
    record = change.record
    keys.by_digest[record["digest"]] = record
    keys.by_id[record["key_id"]] = record


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self._config = settings.key_projects
        self._admins = settings.admin_keys
        self._view: LogView[Keys] = LogView(settings.bootstrap_servers, settings.topics.keys, fold_keys,
                                            Keys({}, {}), settings.config.kafka)

    async def start(self) -> None:
        await self._view.start()

    async def stop(self) -> None:
        await self._view.stop()

    def caller(self, authorization: str | None) -> Caller:
        """Who is calling, or a 401 that says why not (unknown, revoked, expired)."""
        digest = bearer_digest(authorization)
        project = self._config.get(digest)
        if project is not None:
            return Caller(project, key_id(digest), admin=digest in self._admins)
        record = self._view.state.by_digest.get(digest)
        if record is None:
            raise INVALID_KEY
        if record["revoked_at_ms"] is not None:
            raise GatewayError(401, "authentication_error", "revoked_api_key",
                               f"gateway key {record['key_id']} was revoked")
        if record["expires_at_ms"] is not None and record["expires_at_ms"] <= _now_ms():
            raise GatewayError(401, "authentication_error", "expired_api_key",
                               f"gateway key {record['key_id']} expired")
        return Caller(record["project"], record["key_id"], record["user"], record["team"],
                      tuple(record["allowed_models"]))

    def admin(self, authorization: str | None) -> Caller:
        caller = self.caller(authorization)
        if not caller.admin:
            raise GatewayError(403, "permission_error", "forbidden", "this needs an admin key (admin: true)")
        return caller

    async def create(self, project: str, team: str | None, user: str | None, allowed_models: list[str],
                     expires_at_ms: int | None, metadata: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """A new key: the secret (returned once, never stored) and its record."""
        secret = "sk-gw-" + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        now = _now_ms()
        record = {"key_id": key_id(digest), "digest": digest, "project": project, "team": team, "user": user,
                  "allowed_models": allowed_models, "expires_at_ms": expires_at_ms, "revoked_at_ms": None,
                  "metadata": metadata, "created_at_ms": now, "changed_at_ms": now}
        await self._view.publish(record["key_id"].encode(), EVENT, record)
        return secret, record

    async def change(self, key: str, **fields: Any) -> dict[str, Any]:
        record = self.find(key)
        updated = {**record, **fields, "changed_at_ms": _now_ms()}
        await self._view.publish(key.encode(), EVENT, updated)
        return updated

    def find(self, key: str) -> dict[str, Any]:
        record = self._view.state.by_id.get(key)
        if record is None:
            raise GatewayError(404, "invalid_request_error", "key_not_found", f"no gateway key {key!r}", "key_id")
        return record

    def list(self, project: str | None) -> list[dict[str, Any]]:
        return [r for r in self._view.state.by_id.values() if project is None or r["project"] == project]
