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

    def scope(request: Request) -> Scope:
        caller = keyring.caller(request.headers.get("authorization"))
        return Scope(None if caller.admin else caller.project)

    def filters(request: Request) -> dict[str, str | None]:
        return {name: request.query_params.get(name) for name in queries.FILTERS if request.query_params.get(name)}

    async def run(sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            return await asyncio.to_thread(store.query, sql, params)
        except Exception as exc:  # the database's own message names the problem
            raise invalid_request(f"the query failed: {str(exc).splitlines()[0][:300]}", "invalid_query") from None

    @api.get("/summary")
    async def summary(request: Request, group_by: str | None = None, interval: str = "none",
                      project: str | None = None) -> Response:
        """Requests, failovers, errors, tokens, cost and latency / TTFT quantiles over a time range, grouped
        by any of model, provider, project, user, status, and bucketed by minute, hour or day."""
        who = scope(request)
        since, until = queries.time_range(request.query_params.get("from"), request.query_params.get("to"))
        wanted = {k: v for k, v in filters(request).items() if k != "operation"}
        sql, params = queries.summary(who, group_by, interval, since, until, project, wanted)
        columns, rows = await run(sql, params)
        return _json({"from": since, "to": until, "rows": _rows(columns, rows)})

    @api.get("/requests")
    async def request_log(request: Request, project: str | None = None, limit: int = 100,
                          cursor: str | None = None) -> Response:
        """The request log, newest first, one page at a time (`next_cursor` fetches the next)."""
        who = scope(request)
        since, until = queries.time_range(request.query_params.get("from"), request.query_params.get("to"))
        sql, params = queries.request_log(who, since, until, project, filters(request), limit, cursor)
        columns, rows = await run(sql, params)
        items = _rows(columns, rows)
        last = items[-1] if len(items) == limit else None
        next_cursor = f"{int(last['recorded_at'].timestamp() * 1000)}/{last['event_id']}" if last else None
        return _json({"data": items, "next_cursor": next_cursor})

    @api.get("/export")
    async def export(request: Request, format: str = "csv", project: str | None = None) -> Response:
        """The request log as CSV, JSON lines or Parquet, streamed as the database writes it."""
        who = scope(request)
        if format not in queries.EXPORT_FORMATS:
            raise invalid_request(f"'format' is one of {', '.join(queries.EXPORT_FORMATS)}", "invalid_value",
                                  "format")
        since, until = queries.time_range(request.query_params.get("from"), request.query_params.get("to"))
        sql, params = queries.export(who, since, until, project, filters(request))
        fmt, media_type = queries.EXPORT_FORMATS[format]
        chunks = store.stream(sql, params, fmt)

        async def body() -> AsyncIterator[bytes]:
            while (chunk := await asyncio.to_thread(_next, chunks)) is not None:
                yield chunk

        return StreamingResponse(body(), media_type=media_type, headers={
            "content-disposition": f'attachment; filename="requests.{format}"'})

    @api.post("/sql")
    async def sql(request: Request) -> Response:
        """Read-only SQL (admin keys only): the database refuses writes, DDL and settings."""
        if scope(request).project is not None:
            raise GatewayError(403, "permission_error", "forbidden", "SQL needs an admin key (admin: true)")
        try:
            query = orjson.loads(await request.body())["query"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise invalid_request("the body is {\"query\": \"SELECT ...\"}", "invalid_json", "query") from None
        if not isinstance(query, str) or not query.strip():
            raise invalid_request("'query' must be a SQL statement", "invalid_value", "query")
        try:
            columns, rows = await asyncio.to_thread(store.user_query, query)
        except NotReadOnly as exc:
            raise invalid_request(str(exc), "read_only", "query") from None
        except Exception as exc:
            message = str(exc).splitlines()[0][:300]
            code = "read_only" if "readonly" in message.lower() else "invalid_query"
            raise invalid_request(f"the query failed: {message}", code, "query") from None
        return _json({"columns": columns, "rows": rows})

    @api.get("/status")
    async def status(request: Request) -> Response:
        scope(request)
        return _json({"sinks": [{"inserted": s.inserted, "duplicates_skipped": s.duplicates,
                                 "undecodable": s.undecodable, "last_insert_at": s.last_insert_at} for s in sinks]})

    return api


def _next(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)
