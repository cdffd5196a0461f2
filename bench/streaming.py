"""Time to first token and time to last token added by the gateway (Kafka in the path) to a stream of
64 tokens from the OpenAI mock, against the same mock called directly, at 1 and 16 concurrent streams.

    python -m bench.streaming [--levels 1,16] [--streams 300] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson
import uvloop

from bench.stack import KEY, MOCK_KEY, running_stack


async def _one(session: aiohttp.ClientSession, url: str, key: str, model: str) -> tuple[float, float]:
    """(time to the first content chunk, time to `data: [DONE]`) of one streamed request, in ms."""
    body = orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "Stream."}]})
    started = time.perf_counter()
    first = 0.0
    async with session.post(url, data=body, headers={"Authorization": f"Bearer {key}",
                                                     "content-type": "application/json"}) as response:
        response.raise_for_status()
        async for line in response.content:
            if not first and b'"content":"tok' in line:
                first = time.perf_counter()
            if line.startswith(b"data: [DONE]"):
                break
    return (first - started) * 1000, (time.perf_counter() - started) * 1000


async def _level(url: str, key: str, model: str, streams: int, concurrency: int) -> tuple[list[float], list[float]]:
    ttft: list[float] = []
    ttlt: list[float] = []
    remaining = streams
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                first, last = await _one(session, url, key, model)
                ttft.append(first)
                ttlt.append(last)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ttft, ttlt


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--port", type=int, default=18088)
    args = parser.parse_args()
    upstream_model = f"gpt-4o-mini-tokens-{args.tokens}"
    rows = []
    with running_stack(args.port, args.mock_port, {"bench-stream": {"provider": "openai",
                                                                    "upstream_model": upstream_model}}) as stack:
        targets = {"direct": (stack.mock + "/chat/completions", MOCK_KEY, upstream_model),
                   "gateway": (stack.gateway + "/v1/chat/completions", KEY, "bench-stream")}
        for url, key, model in targets.values():  # warm-up
            uvloop.run(_level(url, key, model, 50, 8))
        for level in [int(n) for n in args.levels.split(",")]:
            runs = {name: uvloop.run(_level(url, key, model, args.streams, level))
                    for name, (url, key, model) in targets.items()}
            rows.append((level, runs))
    print(f"\nStreaming, {args.tokens} tokens per stream, {args.streams} streams per level, Kafka in the path\n")
    print("| streams | direct TTFT p50 / p99 | gateway TTFT p50 / p99 | added TTFT p50 / p99 "
          "| direct TTLT p50 | gateway TTLT p50 | added TTLT p50 / p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for level, runs in rows:
        (dft, dlt), (gft, glt) = runs["direct"], runs["gateway"]
        print(f"| {level} | {_pct(dft, .5):.2f} / {_pct(dft, .99):.2f} | {_pct(gft, .5):.2f} / {_pct(gft, .99):.2f} "
              f"| {_pct(gft, .5) - _pct(dft, .5):.2f} / {_pct(gft, .99) - _pct(dft, .99):.2f} "
              f"| {_pct(dlt, .5):.2f} | {_pct(glt, .5):.2f} "
              f"| {_pct(glt, .5) - _pct(dlt, .5):.2f} / {_pct(glt, .99) - _pct(dlt, .99):.2f} |")
    print("\nms; TTFT = time to the first content chunk, TTLT = time to data: [DONE]")


if __name__ == "__main__":
    main()
