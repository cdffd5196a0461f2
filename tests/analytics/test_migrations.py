"""A store made before the rollups knew routes: upgrading it regroups what it already holds by route, changes
no total, and what arrives after the upgrade lands under its route too."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analytics import queries, store
from analytics.rows import request_row
from analytics.store import Store

ROUTE_MIGRATION = "0007_route_in_rollups"


def _usage(n: int, route: str | None, cost: float) -> dict[str, Any]:
    return {"event_id": f"e{route}{n}", "request_id": f"r{route}{n}", "recorded_at_ms": 1_764_600_000_000 + n,
            "project": "p", "key_id": "k", "model": "gpt-4o", "provider": "openai", "status": "ok",
            "error_code": None, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": cost, "latency_ms": 100.0,
            "attempts": 1, "route": route, "strategy": "fallback" if route else None}


def _summary(held: Store, group_by: str, **filters: str) -> dict[tuple[Any, ...], tuple[int, float]]:
    sql, params = queries.summary(queries.Scope(None), group_by, "day", datetime(2025, 1, 1, tzinfo=UTC),
                                  datetime(2027, 1, 1, tzinfo=UTC), None, filters)
    columns, rows = held.query(sql, params)
    keys = [columns.index(g) for g in group_by.split(",")]
    return {tuple(row[i] for i in keys): (row[columns.index("requests")], round(row[columns.index("cost_usd")], 6))
            for row in rows}


def test_upgrading_a_store_groups_what_it_holds_by_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for file in sorted(store.MIGRATIONS.glob("*.sql")):
        if file.stem < ROUTE_MIGRATION:
            shutil.copy(file, before)
    real = store.MIGRATIONS
    monkeypatch.setattr(store, "MIGRATIONS", before)
    held = Store(None, tmp_path / "store")
    held.migrate()
    held.insert_requests([request_row(_usage(n, "smart", 0.5)) for n in range(3)]
                         + [request_row(_usage(n, None, 0.25)) for n in range(2)])
    assert _summary(held, "model") == {("gpt-4o",): (5, 2.0)}

    monkeypatch.setattr(store, "MIGRATIONS", real)
    assert held.migrate() == [ROUTE_MIGRATION]

    assert _summary(held, "model") == {("gpt-4o",): (5, 2.0)}  # no total changed
    assert _summary(held, "route") == {("smart",): (3, 1.5), ("",): (2, 0.5)}
    held.insert_requests([request_row(_usage(n, "cheap", 1.0)) for n in range(10, 12)])
    assert _summary(held, "route") == {("smart",): (3, 1.5), ("",): (2, 0.5), ("cheap",): (2, 2.0)}
    assert _summary(held, "model", route="smart") == {("gpt-4o",): (3, 1.5)}
    held.close()
