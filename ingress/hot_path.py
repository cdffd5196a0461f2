"""The chat endpoints served ahead of FastAPI's middleware and routing stack.

Measured with py-spy under load (README, "Where the time goes"): FastAPI's middleware, routing and
endpoint wrappers cost more CPU per request than the chat handler itself. The hot routes are plain
Starlette request/response functions looked up in one dict; every other route (models, health,
readiness, docs) stays in the FastAPI app behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from infra import metrics
from ingress.errors import GatewayError, error_response

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("gateway.ingress")


class HotPath:
    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], Handler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope.get("method", ""), scope.get("path", ""))) \
            if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            response = await handler(Request(scope, receive))
        except GatewayError as error:
            response = error_response(error)
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            response = error_response(GatewayError(500, "api_error", "internal_error", "internal gateway error"))
        path = scope["path"]
        metrics.child(metrics.HTTP_SECONDS, path).observe(time.perf_counter() - started)
        metrics.child(metrics.HTTP_REQUESTS, path, str(response.status_code)).inc()
        await response(scope, receive, send)
