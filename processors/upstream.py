"""The one HTTP runner: a pooled httpx client per provider. Adapters build calls; this sends them."""

from __future__ import annotations

import httpx
import orjson

from infra.config import Provider
from processors.providers.base import HttpCall, ProviderError


class UpstreamResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Upstreams:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._clients = {
            name: httpx.AsyncClient(
                base_url=p.base_url,
                limits=httpx.Limits(max_connections=p.max_connections, max_keepalive_connections=p.max_connections),
                timeout=httpx.Timeout(p.timeout_s, connect=min(p.timeout_s, 5.0)),
            )
            for name, p in providers.items()
        }

    async def send(self, provider: str, call: HttpCall, timeout_s: float) -> UpstreamResponse | ProviderError:
        """Send a call; transport failures come back as retryable ProviderErrors, never raised."""
        client = self._clients[provider]
        try:
            response = await client.request(
                call.method, call.path.lstrip("/"), headers=call.headers, content=orjson.dumps(call.body),
                timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            )
        except httpx.TimeoutException as exc:
            return ProviderError("timeout", f"no answer within {timeout_s:.1f}s ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return ProviderError("connection", f"{type(exc).__name__}: {exc}")
        return UpstreamResponse(response.status_code, dict(response.headers), response.content)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
