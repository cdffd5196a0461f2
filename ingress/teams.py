"""Teams: named groups of keys inside one project, which rate limits, budgets (scope `team`) and analytics
count by. They live as `TeamChanged` events on the compacted `teams` topic, a view of the log every ingress
folds; a key names its team at creation, and the team must exist in the key's project."""

from __future__ import annotations

import time
from typing import Any

from infra.config import Settings
from infra.log_view import Change, LogView
from ingress.errors import GatewayError

EVENT = "TeamChanged"


def fold_teams(teams: dict[str, dict[str, Any]], change: Change) -> None:
    if change.record is not None:
        teams[change.record["team"]] = change.record


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TeamDirectory:
    def __init__(self, settings: Settings) -> None:
        self._view: LogView[dict[str, dict[str, Any]]] = LogView(
            settings.bootstrap_servers, settings.topics.teams, fold_teams, {}, settings.config.kafka)

    async def start(self) -> None:
        await self._view.start()

    async def stop(self) -> None:
        await self._view.stop()

    def find(self, team: str) -> dict[str, Any]:
        record = self._view.state.get(team)
        if record is None or record["removed_at_ms"] is not None:
            raise GatewayError(404, "invalid_request_error", "team_not_found", f"no team {team!r}", "team")
        return record

    def list(self, project: str | None) -> list[dict[str, Any]]:
        return [r for r in self._view.state.values()
                if r["removed_at_ms"] is None and (project is None or r["project"] == project)]

    async def put(self, team: str, project: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Create a team, or change its metadata; a team never moves to another project."""
        now = _now_ms()
        current = self._view.state.get(team)
        if current is not None and current["removed_at_ms"] is None and current["project"] != project:
            raise GatewayError(409, "invalid_request_error", "team_in_other_project",
                               f"team {team!r} belongs to project {current['project']!r}", "project")
        created = current["created_at_ms"] if current is not None and current["removed_at_ms"] is None else now
        record = {"team": team, "project": project, "metadata": metadata, "created_at_ms": created,
                  "changed_at_ms": now, "removed_at_ms": None}
        await self._view.publish(team.encode(), EVENT, record)
        return record

    async def remove(self, team: str, active_keys: list[str]) -> dict[str, Any]:
        """Remove a team with no live keys (revoke them first: a key's team is part of what it is)."""
        record = self.find(team)
        if active_keys:
            raise GatewayError(409, "invalid_request_error", "team_has_keys",
                               f"team {team!r} still has live keys {', '.join(sorted(active_keys))}; revoke them "
                               "first", "team")
        removed = {**record, "changed_at_ms": _now_ms(), "removed_at_ms": _now_ms()}
        await self._view.publish(team.encode(), EVENT, removed)
        return removed
