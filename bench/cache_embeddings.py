"""The semantic cache's embeddings under concurrent lookups: prompts embedded one at a time (a batch of one,
as before 2026-12-01) against the `EmbeddingQueue`'s batches, with the bundled model on one thread; each
level's lookups come `--concurrency` at a time, closed loop. Prints prompts a second and the median wait.

    python -m bench.cache_embeddings [--concurrency 1,4,16] [--prompts 96] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from processors.cache.service import EmbeddingQueue, LocalEmbedder


async def _level(queue: EmbeddingQueue, prompts: list[str], concurrency: int) -> tuple[float, float]:
    waits: list[float] = []
    remaining = list(prompts)

    async def client() -> None:
        while remaining:
            prompt = remaining.pop()
            started = time.perf_counter()
            await queue.embed(prompt)
            waits.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(prompts) / (time.perf_counter() - started), statistics.median(waits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    print("| concurrent lookups | round | one at a time: prompts/s, median wait ms "
          "| batched: prompts/s, median wait ms |")
    print("|---:|---:|---:|---:|")
    with ThreadPoolExecutor(1) as thread:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for round_ in range(1, args.rounds + 1):
                prompts = [f"How do I change the billing address of account {round_}-{n}?" for n in range(args.prompts)]
                single = asyncio.run(_level(EmbeddingQueue(embedder, thread, max_batch=1), prompts, concurrency))
                batched = asyncio.run(_level(EmbeddingQueue(embedder, thread), prompts, concurrency))
                print(f"| {concurrency} | {round_} | {single[0]:.1f}, {single[1]:.0f} | {batched[0]:.1f}, "
                      f"{batched[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
