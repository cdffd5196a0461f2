"""The cache's embedding queue with the bundled model: prompts that come together are embedded in batches, each
gets the vector it would get alone, and a failed batch fails its lookups only (they are skipped, not hung)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from infra.config import Cache
from processors.cache.service import EmbeddingQueue, GatewayEmbedder, LocalEmbedder

PROMPTS = [f"How do I reset the password of account {n}?" for n in range(12)]


def test_prompts_that_come_together_are_embedded_in_batches_each_as_alone() -> None:
    embedder = LocalEmbedder()
    alone = [embedder.embed([prompt])[0] for prompt in PROMPTS]

    async def together() -> tuple[list[list[float]], int]:
        with ThreadPoolExecutor(1) as thread:
            queue = EmbeddingQueue(embedder, thread, max_batch=8)
            vectors = await asyncio.gather(*(queue.embed(prompt) for prompt in PROMPTS))
            return list(vectors), queue.batches

    vectors, batches = asyncio.run(together())
    assert batches == 2  # 12 prompts at once, 8 a batch
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(alone, vectors, strict=True))


def test_a_failed_batch_fails_each_of_its_lookups_and_the_queue_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CACHE_KEY", "sk-test")
    unreachable = GatewayEmbedder(Cache.model_validate({"embeddings_model": "text-embedding-3-small", "dimensions": 16,
                                                        "gateway_url": "http://127.0.0.1:9",
                                                        "gateway_key_env": "TEST_CACHE_KEY"}))

    async def run() -> tuple[list[BaseException | list[float]], BaseException | list[float]]:
        with ThreadPoolExecutor(1) as thread:
            queue = EmbeddingQueue(unreachable, thread)
            failed = await asyncio.gather(*(queue.embed(p) for p in PROMPTS[:3]), return_exceptions=True)
            later = await asyncio.wait_for(asyncio.gather(queue.embed(PROMPTS[3]), return_exceptions=True), 10)
            return list(failed), later[0]

    failed, later = asyncio.run(run())
    assert [type(f) for f in failed] == [httpx.ConnectError] * 3  # the lookups skip the semantic step
    assert isinstance(later, httpx.ConnectError)  # a prompt after the failure is taken, not left waiting
