"""Routing under provider faults, through the real path (Kafka, router, the OpenAI mock):

1. dead primary: a route whose primary stalls every call (2 s first-byte limit, 250 ms hedge delay) and
   whose second target is healthy, one client: latency from the first request on, beside the healthy path;
2. provider chaos: 10,000 requests at 32 connections through a route whose primary fails 20 % of calls and
   stalls 5 %, with one healthy target: answered, clear errors, lost, p50/p99;
3. `fastest` against two targets of 50 ms and 300 ms that swap after 20 s: how many requests it takes to
   follow the swap.

    python -m bench.routing [--requests 10000] [--out bench/results/routing-<date>.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from bench.stack import KEY, Stack, running_stack

HERE = Path(__file__).resolve().parent
ROUTES = {"routes": {
    "healthy": {"targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
    "dead-primary": {"hedge_after_ms": 250, "first_byte_timeout_s": 2, "targets": [
        {"provider": "openai", "model": "gpt-4o-mini-stall-30", "name": "primary", "catalog": "gpt-4o-mini"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "healthy"}]},
    "recovering": {"hedge_after_ms": 250, "first_byte_timeout_s": 2, "targets": [
        {"provider": "openai", "model": "gpt-4o-mini-ms-30000-then-1-after-20s", "name": "primary",
         "catalog": "gpt-4o-mini"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "healthy"}]},
    "chaotic": {"hedge_after_ms": 250, "first_byte_timeout_s": 1, "targets": [
        {"provider": "openai", "model": "gpt-4o-mini-chaos", "name": "primary", "catalog": "gpt-4o-mini"},
        {"provider": "openai", "model": "gpt-4o-mini", "name": "backup"}]},
    "quickest": {"strategy": "fastest", "exploration": 0.1, "targets": [
        {"provider": "openai", "model": "gpt-4o-mini-ms-50-then-300-after-20s", "name": "a", "catalog": "gpt-4o-mini"},
        {"provider": "openai", "model": "gpt-4o-mini-ms-300-then-50-after-20s", "name": "b",
         "catalog": "gpt-4o-mini"}]},
}}


async def _ask(session: aiohttp.ClientSession, stack: Stack, model: str, i: int) -> tuple[int, float, str]:
    started = time.perf_counter()
    try:
        async with session.post(stack.gateway + "/v1/gateway/chat", headers={"Authorization": f"Bearer {KEY}"},
                                json={"model": model, "max_tokens": 16,
                                      "messages": [{"role": "user", "content": f"route {i}"}]}) as response:
            await response.read()
            return response.status, (time.perf_counter() - started) * 1000, response.headers.get("x-gateway-target", "")
    except (aiohttp.ClientError, TimeoutError):
        return 0, (time.perf_counter() - started) * 1000, ""


async def _sequential(stack: Stack, model: str, n: int, pause_s: float = 0.0) -> list[tuple[int, float, str]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        out = []
        for i in range(n):
            out.append(await _ask(session, stack, model, i))
            await asyncio.sleep(pause_s)
        return out


async def _concurrent(stack: Stack, model: str, n: int, connections: int) -> list[tuple[int, float, str]]:
    queue = iter(range(n))
    results: list[tuple[int, float, str]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker() -> None:
            for i in queue:
                results.append(await _ask(session, stack, model, i))
        await asyncio.gather(*(worker() for _ in range(connections)))
    return results


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def dead_primary(stack: Stack) -> list[str]:
    healthy = asyncio.run(_sequential(stack, "healthy", 50))
    dead = asyncio.run(_sequential(stack, "dead-primary", 100))
    base = statistics.median(ms for _, ms, _ in healthy)
    ms = [m for _, m, _ in dead]
    return ["### Dead primary (stalls every call; 2 s first-byte limit, 250 ms hedge delay, circuit after 5)", "",
            "| requests | p50 ms | max ms |", "|---|---:|---:|",
            f"| healthy path alone (50) | {base:.1f} | {max(m for _, m, _ in healthy):.1f} |",
            f"| dead-primary 1-5 | {_p(ms[:5], 50):.1f} | {max(ms[:5]):.1f} |",
            f"| dead-primary 6-20 | {_p(ms[5:20], 50):.1f} | {max(ms[5:20]):.1f} |",
            f"| dead-primary 21-100 | {_p(ms[20:], 50):.1f} | {max(ms[20:]):.1f} |", "",
            f"Every request answered: {all(s == 200 for s, _, _ in dead)}; slowest {max(ms):.0f} ms (the goal: the "
            f"hedge delay plus the healthy path, {250 + base:.0f} ms); p50 after the circuit opened "
            f"{_p(ms[20:], 50) - base:+.1f} ms against the healthy path.", ""]


def recovery(stack: Stack, cooldown_s: float) -> list[str]:
    """A primary dead for its first 20 s: how long after it recovers the route takes it back."""
    async def run() -> tuple[float, float | None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            started = time.monotonic()
            while time.monotonic() - started < 20 + 2 * cooldown_s:
                _, _, target = await _ask(session, stack, "recovering", 0)
                if target.endswith("/primary"):
                    return started, time.monotonic()
                await asyncio.sleep(0.2)
            return started, None
    started, back = asyncio.run(run())
    after = f"{back - started - 20:.1f} s after it recovered" if back else "not within two cool-downs"
    return [f"A primary that stalls for 20 s, then answers: taken back {after} (circuit cool-down {cooldown_s:.0f} s).",
            ""]


def chaos(stack: Stack, n: int) -> list[str]:
    started = time.monotonic()
    results = asyncio.run(_concurrent(stack, "chaotic", n, 32))
    took = time.monotonic() - started
    ok = [ms for status, ms, _ in results if status == 200]
    errors = [s for s, _, _ in results if s not in (0, 200)]
    lost = n - len(ok) - len(errors)
    return ["### Provider chaos (primary fails 20 %, stalls 5 %; one healthy target; 32 connections)", "",
            "| requests | answered | clear errors | lost | p50 ms | p99 ms | req/s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {n:,} | {len(ok) / n:.3%} | {len(errors) / n:.3%} | {lost} | {_p(ok, 50):.1f} | {_p(ok, 99):.1f} | "
            f"{n / took:.0f} |", ""]


def fastest(stack: Stack) -> list[str]:
    results = asyncio.run(_sequential(stack, "quickest", 400, pause_s=0.05))
    picks = [target.rsplit("/", 1)[-1] for _, _, target in results]
    ms = [m for _, m, _ in results]
    # The swap: the first request slower than 200 ms on `a` after a run of fast ones.
    swap = next((i for i in range(20, len(picks)) if picks[i] == "a" and ms[i] > 200), None)
    followed = None
    if swap is not None:
        followed = next((j - swap for j in range(swap, len(picks) - 10) if picks[j:j + 10].count("b") >= 9), None)
    return ["### `fastest` (targets of 50 ms and 300 ms that swap after 20 s; exploration 0.1)", "",
            f"Before the swap, `a` answered {picks[:swap].count('a') if swap else 0} of {swap} requests; the swap was "
            f"seen at request {swap}; `b` took 9 of every 10 requests {followed} requests later.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--mock-port", type=int, default=18180)
    today = f"{datetime.date.today():%Y%m%d}"
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"routing-{today}.md")
    args = parser.parse_args()
    routes = Path(tempfile.mkdtemp(prefix="gateway-bench-routes-")) / "routes.yaml"
    routes.write_text(yaml.safe_dump(ROUTES))
    extra: dict[str, Any] = {"routes_file": str(routes), "router": {"circuit_failures": 5, "circuit_cooldown_s": 30}}
    with running_stack(args.port, args.mock_port, extra_config=extra) as stack:
        lines = [f"Routing under faults (`python -m bench.routing`), {today}, 1 ingress + 1 router, the OpenAI "
                 "mock", ""]
        lines += dead_primary(stack)
        lines += recovery(stack, extra["router"]["circuit_cooldown_s"])
        lines += fastest(stack)
        lines += chaos(stack, args.requests)
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
