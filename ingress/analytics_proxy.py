"""`/v1/analytics/*` on the ingress: passed through to `gateway analytics` (the one process that owns the
embedded store), so callers use one address and one key. The analytics process authenticates the key
itself; the answer is streamed back as it comes (exports are not held in memory here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from infra.config import Settings
from ingress.errors import GatewayError

PASSED_HEADERS = ("authorization", "content-type", "accept")


def install(app: FastAPI, settings: Settings, client: list[httpx.AsyncClient]) -> None:
    base = settings.config.analytics.url.rstrip("/")

    @app.api_route("/v1/analytics/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def analytics(path: str, request: Request) -> StreamingResponse:
        return await _forward(f"/v1/analytics/{path}", request)

    @app.get("/dashboard", include_in_schema=False)
    @app.get("/dashboard/{path:path}", include_in_schema=False)
    async def dashboard(request: Request, path: str = "") -> StreamingResponse:
        return await _forward(f"/dashboard/{path}" if path else "/dashboard", request)

    async def _forward(target: str, request: Request) -> StreamingResponse:
        outgoing = client[0].build_request(
            request.method, base + target, params=request.query_params,
            headers={k: v for k, v in request.headers.items() if k in PASSED_HEADERS}, content=await request.body())
        try:
            upstream = await client[0].send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise GatewayError(503, "api_error", "analytics_unavailable",
                               f"the analytics process at {base} did not answer ({type(exc).__name__}); "
                               "is `gateway analytics` running?") from None

        async def body() -> AsyncIterator[bytes]:
            async for chunk in upstream.aiter_raw():
                yield chunk

        headers = {k: v for k, v in upstream.headers.items()
                   if k in ("content-type", "content-disposition", "cache-control")}
        return StreamingResponse(body(), upstream.status_code, headers=headers,
                                 background=BackgroundTask(upstream.aclose))
