"""A router's side of the cache: look a request up in `gateway cache` before any provider is called, and
describe the answer to fill it with. The cache never fails a request: a lookup that errs or takes longer
than `cache.lookup_timeout_ms` is a miss that says `skipped`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from infra.config import Cache
from processors.cache.policy import CachePlan

log = logging.getLogger("gateway.cache")
CACHE_HEADER = "gateway-cache"  # travels with the reply records, to the x-gateway-cache response header


@dataclass(frozen=True)
class Lookup:
    status: str  # hit, semantic-hit, miss or skipped
    similarity: float | None = None
    entry: dict[str, Any] | None = None
    vector: list[float] | None = None  # a semantic miss: the prompt's embedding, for the fill
    embedder: str | None = None  # and which model made it

    def header(self) -> bytes:
        if self.similarity is None:
            return self.status.encode()
        return f"{self.status}; similarity={self.similarity:.4f}".encode()


class CacheClient:
    def __init__(self, config: Cache) -> None:
        self._url = config.url.rstrip("/") + "/lookup"
        self._timeout = aiohttp.ClientTimeout(total=config.lookup_timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    async def lookup(self, plan: CachePlan) -> Lookup:
        if not plan.read:
            return Lookup("miss")  # refresh: answered by the provider, and filled again
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = orjson.dumps({"scope": plan.scope, "exact_key": plan.exact_key, "prompt": plan.prompt,
                             "threshold": plan.threshold})
        try:
            async with self._session.post(self._url, data=body, headers={"content-type": "application/json"}) as r:
                if r.status != 200:
                    raise aiohttp.ClientResponseError(r.request_info, (), status=r.status, message=await r.text())
                found = orjson.loads(await r.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("cache lookup skipped: %s", type(exc).__name__)
            return Lookup("skipped")
        return Lookup(found["status"], found.get("similarity"), found.get("entry"), found.get("vector"),
                      found.get("embedder"))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def fill(request: dict[str, Any], plan: CachePlan, looked: Lookup, reply: dict[str, Any], now_ms: int
         ) -> dict[str, Any]:
    """The CompletionRecorded that lets this answer serve later requests."""
    return {"request_id": request["request_id"], "project": request["project"], "model": request["model"],
            "scope": plan.scope, "exact_key": plan.exact_key, "prompt": plan.prompt, "vector": looked.vector,
            "embedder": looked.embedder,
            "response_json": orjson.dumps(reply).decode(), "cost_usd": reply["cost_usd"],
            "recorded_at_ms": now_ms, "expires_at_ms": now_ms + plan.ttl_s * 1000}
