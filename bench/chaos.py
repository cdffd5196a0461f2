"""Delivery under faults: N requests at C connections through `gateway up --ingress 2 --routers 2` against an
upstream where 20% of calls fail (500 / 429) and 5% stall past the first-byte limit, while a router is
killed (SIGKILL) every 20 s and started again by `gateway up`, and the broker restarts once.

Prints what a user and an auditor see: answered, answered with a clear error, lost, processed twice (more
than one final reply on Kafka), upstream calls per request (at the mock), usage events per request
before and after deduplication by event id, and latency. Needs the local broker (it is restarted).

    python -m bench.chaos [--requests 10000] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.stack import KEY, MOCK_KEY, quantile, wait_http
from infra import kafka_broker
from tests.kafka_events import read_events

HERE = Path(__file__).resolve().parent
CLEAR = {"upstream_unavailable", "upstream_rate_limited", "upstream_timeout", "deadline_exceeded", "kafka_unavailable"}


def _config(workdir: Path, mock: str) -> Path:
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "keys": [{"key": KEY, "project": "chaos"}],
        "providers": {"mock": {"kind": "openai", "base_url": mock, "api_key_env": "BENCH_OPENAI_KEY",
                               "first_byte_timeout_s": 1.0}},
        "models": {"chaos-a": {"provider": "mock", "upstream_model": "gpt-4o-chaos"},
                   "chaos-b": {"provider": "mock", "upstream_model": "gpt-4o-mini-chaos"}},
        "router": {"circuit_failures": 1000, "drain_s": 5},
        "retry": {"attempts_per_model": 2, "backoff_ms": 20, "max_retry_after_s": 1},
    }))
    return path


async def _load(url: str, total: int, connections: int) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    run = uuid.uuid4().hex[:8]

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            text = f"chaos {run} {i}"
            started = time.perf_counter()
            entry: dict[str, object] = {"text": text}
            try:
                async with session.post(url + "/v1/gateway/chat", json={
                        "model": "chaos-a", "fallback": ["chaos-b"], "messages": [{"role": "user", "content": text}]},
                        headers={"Authorization": f"Bearer {KEY}", "x-gateway-timeout-ms": "30000"}) as response:
                    body = await response.json(content_type=None)
                    entry.update(status=response.status, id=response.headers.get("x-request-id"),
                                 code=(body.get("error") or {}).get("code"))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                entry.update(status=None, error=repr(exc))
            entry["ms"] = (time.perf_counter() - started) * 1000
            results.append(entry)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return results


def _chaos_monkey(config: Path, stop: asyncio.Event) -> asyncio.Task[list[str]]:
    async def run() -> list[str]:
        events, started, broker_restarted = [], time.monotonic(), False
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 20)
            if stop.is_set():
                break
            victim = f"router-{len(events) % 2}"
            found = await asyncio.to_thread(
                subprocess.run, ["pgrep", "-f", f"infra.cli --config {config} router --instance-id {victim}"],
                capture_output=True, text=True)
            pids = found.stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
            events.append(f"{time.monotonic() - started:.0f}s: SIGKILL {victim}")
            if not broker_restarted:
                await asyncio.sleep(5)
                await asyncio.to_thread(kafka_broker.stop)
                await asyncio.to_thread(kafka_broker.start)
                broker_restarted = True
                events.append(f"{time.monotonic() - started:.0f}s: broker restarted")
        return events
    return asyncio.create_task(run())


async def _run(url: str, config: Path, total: int, connections: int) -> tuple[list[dict[str, object]], list[str]]:
    stop = asyncio.Event()
    monkey = _chaos_monkey(config, stop)
    results = await _load(url, total, connections)
    stop.set()
    return results, await monkey


def _table(results: list[dict[str, object]], replies: list[dict[str, Any]], usage: list[dict[str, Any]],
           calls: dict[str, int], events: list[str], elapsed: float, connections: int) -> str:
    """What the run shows: every request answered once (or with a clear error), each counted once."""
    ids = {str(r["id"]) for r in results if r.get("id")}
    finals = collections.Counter(r["request_id"] for r in replies if r["request_id"] in ids)
    usage_ids = collections.Counter(u["event_id"] for u in usage if u["request_id"] in ids)
    ok = [r for r in results if r.get("status") == 200]
    clear = [r for r in results if r.get("status") not in (None, 200) and r.get("code") in CLEAR]
    unclear = [r for r in results if r.get("status") not in (None, 200) and r.get("code") not in CLEAR]
    lost = [r for r in results if r.get("status") is None]
    upstream_calls = sum(calls.get(str(r["text"]), 0) for r in results)
    latencies = [float(r["ms"]) for r in results]  # type: ignore[arg-type]
    rows = [
        ("requests", f"{len(results):,} at {connections} connections in {elapsed:.0f} s "
                     f"({len(results) / elapsed:,.0f}/s)"),
        ("answered successfully", f"{len(ok):,}"),
        ("answered with a clear error", f"{len(clear):,} ({dict(collections.Counter(r['code'] for r in clear))})"),
        ("answered with another error", f"{len(unclear):,} {unclear[:3] if unclear else ''}"),
        ("lost (no answer)", f"{len(lost):,}"),
        ("processed twice (>1 final reply on Kafka)", f"{sum(1 for n in finals.values() if n > 1):,}"),
        ("upstream calls per request", f"{upstream_calls / len(results):.2f}"),
        ("usage events per request, raw", f"{sum(usage_ids.values()) / max(len(ids), 1):.3f}"),
        ("usage events per request, by event id", f"{len(usage_ids) / max(len(ids), 1):.3f}"),
        ("latency p50 / p99 ms", f"{quantile(latencies, 0.5):.1f} / {quantile(latencies, 0.99):.1f}"),
        ("faults", "; ".join(events)),
    ]
    return "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--mock-port", type=int, default=18197)
    args = parser.parse_args()

    bootstrap = kafka_broker.start()
    prefix = f"chaos-{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="gateway-chaos-"))
    mock = f"http://127.0.0.1:{args.mock_port}/v1"
    config = _config(workdir, mock)
    env = {**os.environ, "GATEWAY_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "BENCH_OPENAI_KEY": MOCK_KEY, "MOCK_OPENAI_API_KEY": MOCK_KEY}
    logs = open(workdir / "processes.log", "ab")
    mock_process = subprocess.Popen(
        [sys.executable, "-m", "tests.mocks.openai_mock", "--port", str(args.mock_port)],
        env=env, stdout=logs, stderr=logs)
    up = subprocess.Popen([sys.executable, "-m", "infra.cli", "--config", str(config), "up", "--port", str(args.port),
                           "--ingress", "2", "--routers", "2"], env=env, stdout=logs, stderr=logs)
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_http(url + "/ready", 90)
        started = time.monotonic()
        results, events = asyncio.run(_run(url, config, args.requests, args.connections))
        elapsed = time.monotonic() - started
        time.sleep(3)  # the audit producer's last batches
        calls = json.loads(subprocess.run(["curl", "-s", mock.removesuffix("/v1") + "/mock/stats"],
                                          capture_output=True, text=True).stdout)["calls"]
        replies = [r for name, r in read_events(bootstrap, prefix + "replies") if name != "ResponseChunk"]
        usage = [u for _, u in read_events(bootstrap, prefix + "usage")]
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        mock_process.send_signal(signal.SIGTERM)
        mock_process.wait(10)

    table = _table(results, replies, usage, calls, events, elapsed, args.connections)
    print(table)
    out = HERE / "results" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"`python -m bench.chaos --requests {args.requests} --connections {args.connections}`\n\n{table}\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
