"""`gateway analytics`: the one process that owns the embedded store (chDB opens a directory in one process
only): it runs the sink and serves the query API. With a ClickHouse server (`CLICKHOUSE_URL`), run as
many as you like: they share the consumer group (each sinks some partitions) and all serve queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.responses import Response

from analytics import api, dashboard
from analytics.sink import AnalyticsSink
from analytics.store import Store
from infra import heap, metrics
from infra.config import Settings
from infra.paths import home
from ingress.errors import install
from ingress.keyring import KeyRing

log = logging.getLogger("gateway.analytics")


def open_store(settings: Settings) -> Store:
    return Store(settings.env.clickhouse_url, settings.config.analytics.path or home() / "analytics")


def create_app(settings: Settings) -> FastAPI:
    store = open_store(settings)
    sinks: list[AnalyticsSink] = []
    keyring = KeyRing(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sink = AnalyticsSink(settings, store)  # inside the event loop, as aiokafka requires
        sinks.append(sink)
        await keyring.start()
        applied = await asyncio.to_thread(store.migrate)
        if applied:
            log.info("analytics migrations applied: %s", ", ".join(applied))
        task = asyncio.create_task(sink.run(replay="0001_requests_and_attempts" in applied))
        task.add_done_callback(_stop_on_failure)
        heap.serving()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await keyring.stop()
            store.close()

    app = FastAPI(title="Kafka AI Gateway analytics", lifespan=lifespan)
    install(app)
    app.include_router(api.router(keyring, store, sinks))

    dashboard.install(app)

    metrics.install(app)

    @app.get("/health")
    async def health() -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    return app


def _stop_on_failure(task: asyncio.Task[None]) -> None:
    """The sink died (the store refused an insert): exit, uncommitted, so a restart inserts it again."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the analytics sink stopped: %r", task.exception())
        os.kill(os.getpid(), signal.SIGTERM)
