"""Time to first token and time to last token added by the gateway (Kafka in the path) to a stream of
64 tokens from the OpenAI mock, against the same mock called directly, at 1 and 16 concurrent streams;
with `--at-once`, each level's streams all start together (the shape of real LLM traffic: many open
streams, a token every `--delay-ms`), and the CPU and resident memory of the router and the ingress
are printed.

    python -m bench.streaming [--levels 1,16] [--streams 300] [--tokens 64]
    python -m bench.streaming --levels 1000,2000 --at-once --delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson
import uvloop

from bench.stack import KEY, MOCK_KEY, machine_cpu, machine_since, process_usage, quantile, running_stack


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--delay-ms", type=int, default=0, help="the mock's time between tokens")
    parser.add_argument("--at-once", action="store_true", help="start each level's streams together")
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--port", type=int, default=18088)
    args = parser.parse_args()
    upstream_model = f"gpt-4o-mini-tokens-{args.tokens}" + (f"-delay-{args.delay_ms}ms" if args.delay_ms else "")
    rows = []
    used: list[tuple[int, dict[str, tuple[float, float, float]]]] = []
    stolen: list[dict[str, float]] = []  # per level, per target: the share of the cores' time the hypervisor took
    with running_stack(args.port, args.mock_port, {"bench-stream": {"provider": "openai",
                                                                    "upstream_model": upstream_model}}) as stack:
        targets = {"direct": (stack.mock + "/chat/completions", MOCK_KEY, upstream_model),
                   "gateway": (stack.gateway + "/v1/chat/completions", KEY, "bench-stream")}
        for url, key, model in targets.values():  # warm-up
            uvloop.run(_level(url, key, model, 50, 8))
        for level in [int(n) for n in args.levels.split(",")]:
            streams = level if args.at_once else args.streams
            runs = {}
            stolen.append({})
            for name, (url, key, model) in targets.items():
                before = {process: process_usage(pid) for process, pid in stack.pids.items()}
                machine = machine_cpu()
                runs[name] = uvloop.run(_level(url, key, model, streams, level))
                busy, idle, steal = machine_since(machine)
                stolen[-1][name] = steal / max(busy + idle + steal, 1e-9)
                if name == "gateway":
                    used.append((level, {process: (process_usage(pid)[0] - before[process][0], before[process][1],
                                                   process_usage(pid)[1]) for process, pid in stack.pids.items()}))
            rows.append((level, runs))
    _print(rows, used, stolen, args)


def _print(rows: list[tuple[int, dict[str, tuple[list[float], list[float]]]]],
           used: list[tuple[int, dict[str, tuple[float, float, float]]]], stolen: list[dict[str, float]],
           args: argparse.Namespace) -> None:
    per_level = "each level's streams at once" if args.at_once else f"{args.streams} streams per level"
    delay = f", {args.delay_ms} ms between tokens" if args.delay_ms else ""
    print(f"\nStreaming, {args.tokens} tokens per stream{delay}, {per_level}, Kafka in the path\n")
    print("| streams | direct TTFT p50 / p99 | gateway TTFT p50 / p99 | added TTFT p50 / p99 "
          "| direct TTLT p50 | gateway TTLT p50 | added TTLT p50 / p99 | stolen: direct, gateway |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (level, runs), taken in zip(rows, stolen, strict=True):
        (dft, dlt), (gft, glt) = runs["direct"], runs["gateway"]
        print(f"| {level} | {quantile(dft, .5):.2f} / {quantile(dft, .99):.2f} "
              f"| {quantile(gft, .5):.2f} / {quantile(gft, .99):.2f} "
              f"| {quantile(gft, .5) - quantile(dft, .5):.2f} / {quantile(gft, .99) - quantile(dft, .99):.2f} "
              f"| {quantile(dlt, .5):.2f} | {quantile(glt, .5):.2f} "
              f"| {quantile(glt, .5) - quantile(dlt, .5):.2f} / {quantile(glt, .99) - quantile(dlt, .99):.2f} "
              f"| {taken['direct']:.0%}, {taken['gateway']:.0%} |")
    print("\nms; TTFT = time to the first content chunk, TTLT = time to data: [DONE]; stolen = the share of the "
          "cores' time the hypervisor gave to other guests during the run (/proc/stat)\n")
    print("| streams | router CPU s | router RSS MiB before → after | ingress CPU s | ingress RSS MiB before → after |")
    print("|---:|---:|---:|---:|---:|")
    for level, processes in used:
        cells = [f"{cpu:.1f} | {before:.0f} → {after:.0f}" for cpu, before, after in
                 (processes["router"], processes["ingress"])]
        print(f"| {level} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
