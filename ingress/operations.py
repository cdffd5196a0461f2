"""The operations surface: models, health, readiness (Kafka, the reply reader, the router group) and
Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from starlette.responses import Response

from infra import kafka_clients, metrics
from infra.config import Settings
from ingress import openapi
from ingress.bridge import KafkaBridge
from ingress.keyring import KeyRing
from processors.routing import RouteTable


class RouterProbe:
    """Readiness of the processors: does the router's consumer group have members? One long-lived admin
    client; the answer is cached for a second, and concurrent probes share one check."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._checked = 0.0
        self._ok = False
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()

    async def ok(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked >= 1.0:
                self._ok = await self._check()
                self._checked = time.monotonic()
            return self._ok

    async def _check(self) -> bool:
        try:
            if self._admin is None:
                admin = kafka_clients.admin(self._settings.bootstrap_servers, self._settings.config.kafka,
                                            request_timeout_ms=2000)
                await admin.start()
                self._admin = admin
            described = await self._admin.describe_consumer_groups([self._settings.router_group])
            groups = described[0].groups if described else []
            # DescribeGroups v0 group: (error_code, group_id, state, protocol_type, protocol, members)
            return bool(groups) and len(groups[0][5]) > 0
        except (KafkaError, OSError):
            return False


def install(app: FastAPI, keyring: KeyRing, routes: RouteTable, bridge: KafkaBridge, probe: RouterProbe) -> None:
    @app.get("/v1/models", responses={401: openapi.error_response("missing or wrong gateway key")})
    async def models(request: Request) -> Response:
        keyring.caller(request.headers.get("authorization"))
        data = [{"id": t.model, "object": "model", "created": 0, "owned_by": t.provider}
                for t in routes.servable_models()]
        data += [{"id": name, "object": "model", "created": 0, "owned_by": "gateway-route"}
                 for name in sorted(routes.book.routes)]  # routes: virtual models a client names like any other
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    metrics.install(app)

    @app.get("/health")
    async def health() -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    @app.get("/ready", responses={503: {"description": "not ready: the same body, naming what is not"}})
    async def ready() -> Response:
        checks = {"kafka": bridge.ready, "replies": bridge.reading, "router": await probe.ok()}
        return Response(orjson.dumps({"ready": all(checks.values()), **checks,
                                      "reply_partition": bridge.reply_partition}),
                        200 if all(checks.values()) else 503, media_type="application/json")
