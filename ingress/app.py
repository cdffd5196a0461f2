"""The ingress application, assembled by surface: the model endpoints on the hot path (`endpoints.py`),
operations (`operations.py`), administration (`admin.py`), analytics passed through
(`analytics_proxy.py`), and the OpenAPI description of all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from infra import heap
from infra.config import Settings
from ingress import admin, analytics_proxy, openapi, operations
from ingress.bridge import KafkaBridge
from ingress.endpoints import Endpoints
from ingress.errors import install
from ingress.hot_path import HotPath
from ingress.keyring import KeyRing
from ingress.requests import RequestBuilder
from ingress.teams import TeamDirectory
from ingress.templates import TemplateStore
from processors.route_changes import FollowedRoutes
from processors.routing import route_table
from schemas.topics import REPLIES


def create_app(settings: Settings, reply_partition: int | None = None, instance_id: str | None = None) -> HotPath:
    """`reply_partition` None (the default): the instance claims one itself."""
    if reply_partition is not None and not 0 <= reply_partition < REPLIES.partitions:
        raise ValueError(f"reply partition must be in [0, {REPLIES.partitions - 1}], not {reply_partition}")
    routes = route_table(settings)
    followed_routes = FollowedRoutes(settings, routes)
    bridge = KafkaBridge(settings, reply_partition, instance_id)
    keyring = KeyRing(settings)
    teams = TeamDirectory(settings)
    templates = TemplateStore(settings)
    probe = operations.RouterProbe(settings)
    analytics_client: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await keyring.start()
        await teams.start()
        await templates.start()
        await followed_routes.start()
        await bridge.start()
        analytics_client.append(httpx.AsyncClient(timeout=httpx.Timeout(120, connect=2)))
        heap.serving()
        try:
            yield
        finally:
            await analytics_client[0].aclose()
            await probe.close()
            await bridge.stop()
            await followed_routes.stop()
            await templates.stop()
            await teams.stop()
            await keyring.stop()

    app = FastAPI(title="Kafka AI Gateway", lifespan=lifespan)
    install(app)
    openapi.install(app)
    operations.install(app, keyring, routes, bridge, probe)
    admin.install(app, keyring, teams, templates, bridge.policy_view, bridge, followed_routes.view)
    analytics_proxy.install(app, settings, analytics_client)
    return HotPath(app, Endpoints(keyring, RequestBuilder(settings, routes, bridge, templates), bridge).routes())
