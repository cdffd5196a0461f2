"""`gateway sql`: read-only SQL through the analytics process's API (it owns the store), printed as a
table, CSV or JSON. The key is `GATEWAY_ADMIN_KEY` (a key marked `admin: true`)."""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any

import httpx

from infra.config import Settings


def run_sql(settings: Settings, query: str, fmt: str) -> int:
    key = os.environ.get("GATEWAY_ADMIN_KEY")
    if not key:
        print("gateway sql: set GATEWAY_ADMIN_KEY to a gateway key marked admin: true", file=sys.stderr)
        return 2
    try:
        response = httpx.post(settings.config.analytics.url + "/v1/analytics/sql", json={"query": query},
                              headers={"Authorization": f"Bearer {key}"}, timeout=120)
    except httpx.HTTPError as exc:
        print(f"gateway sql: cannot reach the analytics process at {settings.config.analytics.url} ({exc}); "
              "is `gateway analytics` running?", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(f"gateway sql: {response.json()['error']['message']}", file=sys.stderr)
        return 1
    result = response.json()
    print_result(result["columns"], result["rows"], fmt)
    return 0


def print_result(columns: list[str], rows: list[list[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells = [[str(c) for c in columns], *([_cell(v) for v in row] for row in rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for i, row in enumerate(cells):
            print("  ".join(v.rjust(w) if i and _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=True)))
            if i == 0:
                print("  ".join("-" * w for w in widths))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _cell(value: Any) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _numeric(value: str) -> bool:
    return value.replace(".", "", 1).replace("-", "", 1).isdigit()
