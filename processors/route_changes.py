"""Routes set through the admin API: `RouteChanged` events on the compacted `routes` topic, folded by every
router, gatekeeper and ingress into the `RouteBook` the routes file starts, where they take the place of
the file's route of the same name until they are removed."""

from __future__ import annotations

import time
from typing import Any

import orjson

from infra.config import Settings
from infra.log_view import Change, LogView
from processors.routes import RouteBook, validated

EVENT = "RouteChanged"


def fold_route(book: RouteBook, change: Change) -> None:
    record = change.record
    if record is None:
        return
    name = record["name"]
    spec = validated({"routes": {name: orjson.loads(record["spec_json"])}})[name] if record["spec_json"] else None
    book.set_from_api(name, spec)


def routes_view(settings: Settings, book: RouteBook) -> LogView[RouteBook]:
    return LogView(settings.bootstrap_servers, settings.topics.routes, fold_route, book, settings.config.kafka)


async def publish(view: LogView[RouteBook], name: str, spec: dict[str, Any] | None) -> None:
    """Set (or, with None, remove) a route; returns once this process's view holds the change."""
    await view.publish(name.encode(), EVENT, {
        "name": name, "spec_json": orjson.dumps(spec).decode() if spec is not None else None,
        "changed_at_ms": time.time_ns() // 1_000_000})
