"""Which HTTP client the router should use for provider calls: httpx's default transport, httpx over
aiohttp's transport (httpx-aiohttp), or aiohttp itself, against the OpenAI mock at several concurrencies.
Prints requests/s and the client's CPU time per request (the mock runs in its own process).

    python -m bench.upstream_clients [--requests 4000] [--levels 16,64,256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson
import uvloop
from httpx_aiohttp import AiohttpTransport

BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]})
HEADERS = {"authorization": "Bearer sk-mock-openai", "content-type": "application/json"}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(call: Callable[[], Awaitable[None]], total: int, concurrency: int) -> tuple[float, float]:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    cpu, wall = _cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - wall), (_cpu() - cpu) / total * 1000


async def bench(base: str, total: int, levels: list[int]) -> list[tuple[str, int, float, float]]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    rows = []
    for level in levels:
        plain = httpx.AsyncClient(base_url=base, limits=limits)
        over_aiohttp = httpx.AsyncClient(base_url=base, transport=AiohttpTransport(limits=limits, trust_env=False))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

        def via_httpx(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                (await client.post("chat/completions", content=BODY, headers=HEADERS)).raise_for_status()
            return post

        async def via_aiohttp(session: aiohttp.ClientSession = session) -> None:
            async with session.post(base + "/chat/completions", data=BODY, headers=HEADERS) as response:
                response.raise_for_status()
                await response.read()

        clients: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = {
            "httpx (httpcore)": (via_httpx(plain), plain.aclose),
            "httpx + aiohttp transport": (via_httpx(over_aiohttp), over_aiohttp.aclose),
            "aiohttp": (via_aiohttp, session.close),
        }
        for name, (call, close) in clients.items():
            await _run(call, min(total, 500), level)  # warm-up: open the connections
            rps, cpu_ms = await _run(call, total, level)
            rows.append((name, level, rps, cpu_ms))
            await close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--levels", default="16,64,256")
    parser.add_argument("--mock-port", type=int, default=18190)
    args = parser.parse_args()
    mock = subprocess.Popen([sys.executable, "-m", "tests.mocks.openai_mock", "--port", str(args.mock_port)],
                            env={**os.environ, "MOCK_OPENAI_API_KEY": "sk-mock-openai"})
    try:
        time.sleep(2)
        rows = uvloop.run(bench(f"http://127.0.0.1:{args.mock_port}/v1", args.requests,
                                [int(n) for n in args.levels.split(",")]))
    finally:
        mock.send_signal(signal.SIGINT)
        mock.wait(10)
    print("\n| client | concurrency | requests/s | client CPU ms/request |\n|---|---:|---:|---:|")
    for name, level, rps, cpu_ms in rows:
        print(f"| {name} | {level} | {rps:.0f} | {cpu_ms:.3f} |")


if __name__ == "__main__":
    main()
