"""`/dashboard`: one static page that reads the query API and draws with Plotly (plotly.js is served from
the `plotly` Python package, so nothing is fetched from a CDN)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response

HERE = Path(__file__).resolve().parent


@cache
def _plotly() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def install(app: FastAPI) -> None:
    @app.get("/dashboard", include_in_schema=False)
    async def page() -> Response:
        return Response((HERE / "index.html").read_bytes(), media_type="text/html")

    @app.get("/dashboard/dashboard.js", include_in_schema=False)
    async def script() -> Response:
        return Response((HERE / "dashboard.js").read_bytes(), media_type="text/javascript")

    @app.get("/dashboard/plotly.js", include_in_schema=False)
    async def plotly() -> Response:
        return Response(_plotly(), media_type="text/javascript", headers={"cache-control": "max-age=86400"})
