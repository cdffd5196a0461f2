"""Routes set through the admin API: `RouteChanged` events on the compacted `routes` topic, folded by every
router, gatekeeper and ingress into the `RouteBook` the routes file starts, where they take the place of
the file's route of the same name until they are removed. `FollowedRoutes` keeps a process's routes current
from both sources."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from infra.config import Settings
from infra.log_view import Change, LogView
from processors.routes import RouteBook, validated
from processors.routing import RouteTable

EVENT = "RouteChanged"


def fold_route(book: RouteBook, change: Change) -> None:
    record = change.record
    if record is None:
        return
    name = record["name"]
    spec = validated({"routes": {name: orjson.loads(record["spec_json"])}})[name] if record["spec_json"] else None
    book.set_from_api(name, spec)


class FollowedRoutes:
    """A process's routes kept current: the routes file read again within `file_every_s` of a change, and the
    routes set through the admin API folded from the routes topic (`view`, which the admin API publishes to)."""

    def __init__(self, settings: Settings, table: RouteTable, file_every_s: float = 1.0) -> None:
        self._book = table.book
        self._file_every_s = file_every_s
        self.view = LogView(settings.bootstrap_servers, settings.topics.routes, fold_route, table.book,
                            settings.config.kafka)
        self._file: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.view.start()
        self._file = asyncio.create_task(self._follow_file())

    async def stop(self) -> None:
        if self._file is not None:
            self._file.cancel()
        await self.view.stop()

    async def _follow_file(self) -> None:
        while True:
            await asyncio.sleep(self._file_every_s)
            self._book.reload_if_changed()


async def publish(view: LogView[RouteBook], name: str, spec: dict[str, Any] | None) -> None:
    """Set (or, with None, remove) a route; returns once this process's view holds the change."""
    await view.publish(name.encode(), EVENT, {
        "name": name, "spec_json": orjson.dumps(spec).decode() if spec is not None else None,
        "changed_at_ms": time.time_ns() // 1_000_000})
