"""The query API of `gateway analytics`: summaries, the request log, exports and read-only SQL, each behind
a gateway key (a key reads its own project; a key marked `admin` reads every project and runs SQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from analytics import queries
from analytics.queries import Scope
from analytics.sink import AnalyticsSink
from analytics.sql_guard import NotReadOnly
from analytics.store import Store
from ingress.errors import GatewayError, invalid_request
from ingress.keyring import KeyRing


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload, default=_default), media_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError


def _rows(columns: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        item = dict(zip(columns, row, strict=True))
        for name in ("latency_ms", "ttft_ms"):
            if isinstance(item.get(name), list):
                item[name] = dict(zip(("p50", "p95", "p99"), item[name], strict=True))
        out.append(item)
    return out


def router(keyring: KeyRing, store: Store, sinks: list[AnalyticsSink]) -> APIRouter:
    api = APIRouter(prefix="/v1/analytics")
    endpoints = AnalyticsEndpoints(keyring, store, sinks)
    api.add_api_route("/summary", endpoints.summary, methods=["GET"])
    api.add_api_route("/requests", endpoints.request_log, methods=["GET"])
    api.add_api_route("/export", endpoints.export, methods=["GET"])
    api.add_api_route("/sql", endpoints.sql, methods=["POST"])
    api.add_api_route("/status", endpoints.status, methods=["GET"])
    return api


class AnalyticsEndpoints:
    def __init__(self, keyring: KeyRing, store: Store, sinks: list[AnalyticsSink]) -> None:
        self._keyring = keyring
        self._store = store
        self._sinks = sinks

    def _scope(self, request: Request) -> Scope:
        caller = self._keyring.caller(request.headers.get("authorization"))
        return Scope(None if caller.admin else caller.project)

    async def _run(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            return await asyncio.to_thread(self._store.query, sql, params)
        except Exception as exc:  # the database's own message names the problem
            raise invalid_request(f"the query failed: {str(exc).splitlines()[0][:300]}", "invalid_query") from None

    async def summary(self, request: Request, group_by: str | None = None, interval: str = "none",
                      project: str | None = None) -> Response:
        """Requests, failovers, errors, tokens, cost and latency / TTFT quantiles over a time range, grouped
        by any of model, provider, project, user, status, route, and bucketed by minute, hour or day."""
        who = self._scope(request)
        since, until = _time_range(request)
        wanted = {k: v for k, v in _filters(request).items() if k != "operation"}
        sql, params = queries.summary(who, group_by, interval, since, until, project, wanted)
        columns, rows = await self._run(sql, params)
        return _json({"from": since, "to": until, "rows": _rows(columns, rows)})

    async def request_log(self, request: Request, project: str | None = None, limit: int = 100,
                          cursor: str | None = None) -> Response:
        """The request log, newest first, one page at a time (`next_cursor` fetches the next)."""
        who = self._scope(request)
        since, until = _time_range(request)
        sql, params = queries.request_log(who, since, until, project, _filters(request), limit, cursor)
        columns, rows = await self._run(sql, params)
        items = _rows(columns, rows)
        last = items[-1] if len(items) == limit else None
        next_cursor = f"{int(last['recorded_at'].timestamp() * 1000)}/{last['event_id']}" if last else None
        return _json({"data": items, "next_cursor": next_cursor})

    async def export(self, request: Request, format: str = "csv", project: str | None = None) -> Response:
        """The request log as CSV, JSON lines or Parquet, streamed as the database writes it."""
        who = self._scope(request)
        if format not in queries.EXPORT_FORMATS:
            raise invalid_request(f"'format' is one of {', '.join(queries.EXPORT_FORMATS)}", "invalid_value",
                                  "format")
        since, until = _time_range(request)
        sql, params = queries.export(who, since, until, project, _filters(request))
        fmt, media_type = queries.EXPORT_FORMATS[format]
        chunks = self._store.stream(sql, params, fmt)

        async def body() -> AsyncIterator[bytes]:
            while (chunk := await asyncio.to_thread(_next, chunks)) is not None:
                yield chunk

        return StreamingResponse(body(), media_type=media_type, headers={
            "content-disposition": f'attachment; filename="requests.{format}"'})

    async def sql(self, request: Request) -> Response:
        """Read-only SQL (admin keys only): the database refuses writes, DDL and settings."""
        if self._scope(request).project is not None:
            raise GatewayError(403, "permission_error", "forbidden", "SQL needs an admin key (admin: true)")
        try:
            query = orjson.loads(await request.body())["query"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise invalid_request("the body is {\"query\": \"SELECT ...\"}", "invalid_json", "query") from None
        if not isinstance(query, str) or not query.strip():
            raise invalid_request("'query' must be a SQL statement", "invalid_value", "query")
        try:
            columns, rows = await asyncio.to_thread(self._store.user_query, query)
        except NotReadOnly as exc:
            raise invalid_request(str(exc), "read_only", "query") from None
        except Exception as exc:
            message = str(exc).splitlines()[0][:300]
            code = "read_only" if "readonly" in message.lower() else "invalid_query"
            raise invalid_request(f"the query failed: {message}", code, "query") from None
        return _json({"columns": columns, "rows": rows})

    async def status(self, request: Request) -> Response:
        self._scope(request)
        return _json({"sinks": [{"inserted": s.inserted, "duplicates_skipped": s.duplicates,
                                 "undecodable": s.undecodable, "last_insert_at": s.last_insert_at}
                                for s in self._sinks]})


def _time_range(request: Request) -> tuple[datetime, datetime]:
    return queries.time_range(request.query_params.get("from"), request.query_params.get("to"))


def _filters(request: Request) -> dict[str, str | None]:
    return {name: request.query_params.get(name) for name in queries.FILTERS if request.query_params.get(name)}


def _next(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)
