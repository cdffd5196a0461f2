"""The query API's questions as SQL (pure: validated parameters in, SQL and bound parameters out). Every
query is scoped to one project unless the caller is an admin; values are bound, never pasted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ingress.errors import GatewayError, invalid_request

GROUPS = ("model", "provider", "project", "user", "status", "route")  # prompt versions: the request log, SQL
INTERVALS = {"minute": "toStartOfMinute(minute)", "hour": "toStartOfHour(minute)", "day": "day", "none": None}
FILTERS = ("model", "provider", "status", "user", "route", "operation")
EXPORT_FORMATS = {"csv": ("CSVWithNames", "text/csv"), "jsonl": ("JSONEachRow", "application/x-ndjson"),
                  "parquet": ("Parquet", "application/vnd.apache.parquet")}
MAX_PAGE = 1000


@dataclass(frozen=True)
class Scope:
    """Whose rows a caller may read: one project, or every project (an admin key)."""

    project: str | None


def parse_time(name: str, value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_request(f"'{name}' must be an ISO 8601 time such as 2026-11-25T10:00:00Z, not {value!r}",
                              "invalid_value", name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    since, until = parse_time("from", start, now - timedelta(days=1)), parse_time("to", end, now)
    if since >= until:
        raise invalid_request(f"'from' ({since.isoformat()}) must be before 'to' ({until.isoformat()})",
                              "invalid_value", "from")
    return since, until


def _where(scope: Scope, project: str | None, filters: dict[str, str | None], time_column: str,
           params: dict[str, Any]) -> str:
    clauses = [f"{time_column} >= {{since:DateTime64(3)}}", f"{time_column} < {{until:DateTime64(3)}}"]
    wanted = scope.project or project
    if scope.project and project and project != scope.project:
        raise GatewayError(403, "permission_error", "forbidden", "this key reads its own project only", "project")
    if wanted:
        clauses.append("project = {project:String}")
        params["project"] = wanted
    for name, value in filters.items():
        if value is not None:
            if name not in FILTERS:
                raise invalid_request(f"unknown filter '{name}'; use {', '.join(FILTERS)}", "invalid_value", name)
            column = "ifNull(user, '')" if name == "user" and time_column == "recorded_at" else name
            clauses.append(f"{column} = {{f_{name}:String}}")
            params[f"f_{name}"] = value
    return " AND ".join(clauses)


def summary(scope: Scope, group_by: str | None, interval: str, since: datetime, until: datetime,
            project: str | None, filters: dict[str, str | None]) -> tuple[str, dict[str, Any]]:
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    for group in groups:
        if group not in GROUPS:
            raise invalid_request(f"unknown group_by '{group}'; use any of {', '.join(GROUPS)}", "invalid_value",
                                  "group_by")
    if interval not in INTERVALS:
        raise invalid_request(f"unknown interval '{interval}'; use {', '.join(INTERVALS)}", "invalid_value",
                              "interval")
    unknown = [name for name in filters if name not in GROUPS]
    if unknown:
        raise invalid_request(f"summaries filter by model, provider, status, user or route, not '{unknown[0]}'",
                              "invalid_value", unknown[0])
    table, time_column = ("usage_by_day", "day") if interval == "day" else ("usage_by_minute", "minute")
    params: dict[str, Any] = {"since": since, "until": until}
    where = _where(scope, project, filters, time_column, params)
    bucket = INTERVALS[interval]
    keys = ([f"{bucket} AS bucket"] if bucket else []) + groups
    select = ", ".join([*keys, "sum(requests) AS requests", "sum(failed_over) AS failed_over",
                        f"sumIf({table}.requests, {table}.status = 'error') AS errors",
                        "sum(prompt_tokens) AS prompt_tokens", "sum(completion_tokens) AS completion_tokens",
                        "sum(cached_tokens) AS cached_tokens", "sum(cost_usd) AS cost_usd",
                        "sum(cache_hits) AS cache_hits", "sum(cost_saved_usd) AS cost_saved_usd",
                        "quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS latency_ms",
                        "quantilesMerge(0.5, 0.95, 0.99)(ttft_ms) AS ttft_ms"])
    names = ["bucket" if k.endswith(" AS bucket") else k for k in keys]
    group = f" GROUP BY {', '.join(names)} ORDER BY {', '.join(names)}" if names else ""
    return f"SELECT {select} FROM {table} WHERE {where}{group}", params


def request_log(scope: Scope, since: datetime, until: datetime, project: str | None,
                filters: dict[str, str | None], limit: int, cursor: str | None) -> tuple[str, dict[str, Any]]:
    if not 1 <= limit <= MAX_PAGE:
        raise invalid_request(f"'limit' must be in [1, {MAX_PAGE}]", "invalid_value", "limit")
    params: dict[str, Any] = {"since": since, "until": until, "limit": limit}
    where = _where(scope, project, filters, "recorded_at", params)
    if cursor:
        at, _, event_id = cursor.partition("/")
        if not at.isdigit() or not event_id:
            raise invalid_request("'cursor' is the next_cursor of a previous page", "invalid_value", "cursor")
        where += (" AND (recorded_at, event_id) < (fromUnixTimestamp64Milli({c_at:Int64}, 'UTC'), {c_id:String})")
        params.update(c_at=int(at), c_id=event_id)
    return (f"SELECT * FROM requests FINAL WHERE {where} ORDER BY recorded_at DESC, event_id DESC "
            "LIMIT {limit:UInt32}"), params


def export(scope: Scope, since: datetime, until: datetime, project: str | None,
           filters: dict[str, str | None]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"since": since, "until": until}
    where = _where(scope, project, filters, "recorded_at", params)
    return f"SELECT * FROM requests FINAL WHERE {where} ORDER BY recorded_at, event_id", params
