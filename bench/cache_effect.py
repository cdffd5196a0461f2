"""What the cache does for a workload where half the prompts come back: cost and latency with the cache
off, exact and semantic, against a mock that takes 500 ms to answer (gpt-4o prices), with 100,000 other
entries in the store (random vectors in the same scope, so every semantic lookup searches all of them).

The workload: 100 questions, then 50 of them asked again word for word and 50 paraphrased (the `same`
pairs of bench/data/cache_pairs.tsv), 8 clients at a time. Each mode has its own scope (its own
max_tokens), so no mode reuses another's answers.

    python -m bench.cache_effect [--entries 100000] [--out bench/results/cache-effect-<date>.md]
"""

from __future__ import annotations

import argparse
import datetime
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.cache_quality import load_pairs
from bench.stack import KEY, Stack, running_stack
from processors.cache.store import EdgeStore
from schemas.topics import TopicNames
from tests.kafka_events import read_events

HERE = Path(__file__).resolve().parent
MODES = {"off": 100, "exact": 101, "semantic": 102}  # mode -> max_tokens (its own scope)


_CLIENTS = threading.local()


def _ask(stack: Stack, text: str, mode: str) -> dict[str, Any]:
    """One request on this thread's own connection (a new httpx client costs more than a cache hit)."""
    if not hasattr(_CLIENTS, "client"):
        _CLIENTS.client = httpx.Client()
    started = time.perf_counter()
    response = _CLIENTS.client.post(
        stack.gateway + "/v1/gateway/chat", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
        json={"model": "gpt-4o", "max_tokens": MODES[mode], "cache": {"mode": mode},
              "messages": [{"role": "user", "content": text}]})
    response.raise_for_status()
    return {"ms": (time.perf_counter() - started) * 1000, "cost": response.json()["usage"]["cost_usd"],
            "cache": response.headers.get("x-gateway-cache", "-").split(";")[0]}


def _start_cache(stack: Stack, port: int) -> subprocess.Popen[bytes]:
    with open(stack.workdir / "cache.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.cli", "cache"], env=stack.env, stdout=log,
                                   stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("bench: the cache did not start")


def _prefill(store_path: Path, scope: str, entries: int) -> float:
    """Fill the store (owned by no process now) with random neighbours in the workload's scope."""
    started = time.monotonic()
    store = EdgeStore(store_path)
    rng = np.random.default_rng(7)
    far = int(time.time() * 1000) + 3_600_000
    for start in range(0, entries, 1000):
        vectors = rng.standard_normal((1000, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i, vector in enumerate(vectors):
            n = start + i
            store.put({"exact_key": f"filler-{n}", "scope": scope, "project": "bench", "model": "gpt-4o",
                       "prompt": f"filler question {n}", "request_id": f"filler-{n}", "response_json": "{}",
                       "cost_usd": 0.0, "recorded_at_ms": far - 3_600_000, "expires_at_ms": far}, vector.tolist())
    store.maintain()
    store.close()
    return time.monotonic() - started


def _run(stack: Stack, mode: str, originals: list[str], repeats: list[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda text: _ask(stack, text, mode), originals))
        time.sleep(3)  # the cache folds the fills
        return first + list(pool.map(lambda text: _ask(stack, text, mode), repeats))


def _hits_alone(stack: Stack, mode: str, texts: list[str]) -> list[float]:
    """One client: hits of this mode only (asked before), what a caller sees when nothing else is going on."""
    found = [_ask(stack, text, mode) for text in texts]
    return [r["ms"] for r in found if r["cache"] == ("semantic-hit" if mode == "semantic" else "hit")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--cache-port", type=int, default=18191)
    today = f"{datetime.date.today():%Y%m%d}"
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"cache-effect-{today}.md")
    args = parser.parse_args()

    paraphrases = [(a, b) for same, a, b in load_pairs() if same][:100]
    originals = [a for a, _ in paraphrases]
    rng = random.Random(3)
    repeats = [a for a, _ in paraphrases[:50]] + [b for _, b in paraphrases[50:]]
    rng.shuffle(repeats)
    store_path = Path(tempfile.mkdtemp(prefix="gateway-bench-cache-")) / "store"
    extra = {"cache": {"url": f"http://127.0.0.1:{args.cache_port}", "store": {"path": str(store_path)}}}
    models = {"gpt-4o": {"provider": "openai", "upstream_model": "gpt-4o-stall-0.5"}}
    results: dict[str, list[dict[str, Any]]] = {}
    with running_stack(args.port, args.mock_port, models=models, extra_config=extra) as stack:
        cache = _start_cache(stack, args.cache_port)
        _ask(stack, "what scope is the semantic workload in?", "semantic")
        time.sleep(2)
        topics = TopicNames.for_prefix(stack.env["GATEWAY_TOPIC_PREFIX"])
        scope = next(r["scope"] for _, r in read_events(stack.env["KAFKA_BOOTSTRAP_SERVERS"], topics.completions))
        cache.send_signal(signal.SIGTERM)
        cache.wait(60)
        fill_s = _prefill(store_path, scope, args.entries)
        cache = _start_cache(stack, args.cache_port)
        try:
            for mode in MODES:
                results[mode] = _run(stack, mode, originals, repeats)
            alone = {"exact": _hits_alone(stack, "exact", originals[:50]),
                     "semantic": _hits_alone(stack, "semantic", [b for _, b in paraphrases[50:]])}
        finally:
            cache.send_signal(signal.SIGTERM)
            cache.wait(60)
    lines = [f"Cache effect: {len(originals)} questions then {len(repeats)} repeats (half word for word, half "
             f"paraphrased), 8 clients, mock answering in 500 ms at gpt-4o prices, {args.entries:,} other entries "
             f"in the store (filled and indexed in {fill_s:.0f} s)", "",
             "| mode | hits | semantic hits | cost USD | mean ms | p99 ms | hit p50 ms | hit p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, rows in results.items():
        ms = np.array([r["ms"] for r in rows])
        hits = [r["ms"] for r in rows if r["cache"] in ("hit", "semantic-hit")]
        semantic = [r["ms"] for r in rows if r["cache"] == "semantic-hit"]
        hit_ms = semantic or hits
        lines.append(f"| {mode} | {len(hits)} | {len(semantic)} | {sum(r['cost'] for r in rows):.6f} | "
                     f"{ms.mean():.1f} | {np.percentile(ms, 99):.1f} | "
                     f"{np.percentile(hit_ms, 50) if hit_ms else float('nan'):.1f} | "
                     f"{np.percentile(hit_ms, 99) if hit_ms else float('nan'):.1f} |")
    lines.append("")
    lines.append("hit p50/p99: semantic hits in the semantic row, exact hits in the exact row; end to end at the "
                 "client, through both Kafka hops, among 8 clients whose misses wait for the provider.")
    for mode, ms_alone in alone.items():
        lines.append(f"One client asking again (hits only, {mode}): p50 {np.percentile(ms_alone, 50):.1f} ms, "
                     f"p99 {np.percentile(ms_alone, 99):.1f} ms over {len(ms_alone)} hits.")
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
