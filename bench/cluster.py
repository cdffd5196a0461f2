"""A broker lost under load, on the local three-node cluster: 16 clients send requests (a quarter of them
streamed) for 60 s; at 20 s the node leading the requests partition is killed (SIGKILL) and started again
at 40 s. Printed: the longest any request waited, p50/p99 before, in the minute around the kill, and after,
how long until throughput was back to what it was, and what was lost (goal: nothing).

    python -m bench.cluster [--out bench/results/cluster-<date>.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from aiokafka.admin import AIOKafkaAdminClient

from bench.stack import KEY, Stack, running_stack
from infra import kafka_broker
from schemas.topics import TopicNames

HERE = Path(__file__).resolve().parent
NODES = 3


def _leader(bootstrap: str, topic: str) -> kafka_broker.Node:
    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return int((await admin.describe_topics([topic]))[0]["partitions"][0]["leader"])
        finally:
            await admin.close()
    leader = asyncio.run(describe())
    return next(node for node in kafka_broker.nodes(NODES) if node.node_id == leader)


Sample = tuple[float, float, int]  # when it started (s into the run), how long it took (ms), its status


def _load(stack: Stack, seconds: float, kill_at: float | None, restart_at: float = 0.0
          ) -> tuple[list[Sample], float]:
    """(start offset s, duration ms, status) per request, and when the kill happened (`kill_at` None: no
    kill, the baseline)."""
    results: list[Sample] = []
    started = time.monotonic()
    stop = threading.Event()

    def client(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = worker
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    response = http.post(stack.gateway + "/v1/gateway/chat", headers={"Authorization": f"Bearer {KEY}"},
                                         json={"model": "gpt-4o-mini", "stream": i % 4 == 0,
                                               "messages": [{"role": "user", "content": f"cluster {i}"}]})
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                results.append((t0 - started, (time.monotonic() - t0) * 1000, status))
                i += 16

    topics = TopicNames.for_prefix(stack.env["GATEWAY_TOPIC_PREFIX"])
    with ThreadPoolExecutor(16) as pool:
        for worker in range(16):
            pool.submit(client, worker)
        killed = float("inf")
        if kill_at is not None:
            time.sleep(kill_at)
            kafka_broker.stop_node(_leader(stack.env["KAFKA_BOOTSTRAP_SERVERS"], topics.requests), kill=True)
            killed = time.monotonic() - started
            time.sleep(max(0.0, restart_at - killed))
            kafka_broker.start(timeout_s=180, count=NODES)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        stop.set()
    return results, killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--mock-port", type=int, default=18180)
    today = f"{datetime.date.today():%Y%m%d}"
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"cluster-{today}.md")
    args = parser.parse_args()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka_broker.start()
    with running_stack(args.port, args.mock_port) as stack:  # the same load on the single broker, no kill
        single, _ = _load(stack, 20, None)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka_broker.start(timeout_s=180, count=NODES)
    with running_stack(args.port, args.mock_port) as stack:
        results, killed = _load(stack, 60, 20, 40)
    ok = [(t, ms) for t, ms, status in results if status == 200]
    before = [ms for t, ms in ok if t < killed]
    around = [ms for t, ms in ok if killed - 30 <= t < killed + 30]
    after = [ms for t, ms in ok if t >= 45]
    per_second = np.bincount([int(t) for t, _ in ok])
    normal = float(np.median(per_second[5:int(killed)])) if int(killed) > 5 else float(per_second.mean())
    back = next((s - killed for s in range(int(killed) + 1, len(per_second))
                 if per_second[s] >= 0.8 * normal), float("nan"))
    lost = sum(1 for _, _, status in results if status == 0)
    errors = sum(1 for _, _, status in results if status not in (0, 200))
    lines = [f"A broker lost under load (`python -m bench.cluster`), {today}: three local KRaft nodes, 1 ingress + "
             "1 router, 16 clients (a quarter streamed), the requests partition's leader SIGKILLed at "
             f"{killed:.0f} s and started again at 40 s", "",
             "| requests | answered | clear errors | lost | longest wait ms | p50 / p99 before | p50 / p99 around the "
             "kill (±30 s) | p50 / p99 after | req/s before | back to 80 % of it after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {len(results):,} | {len(ok):,} | {errors} | {lost} | {max(ms for _, ms, _ in results):.0f} | "
             f"{np.percentile(before, 50):.1f} / {np.percentile(before, 99):.1f} | "
             f"{np.percentile(around, 50):.1f} / {np.percentile(around, 99):.1f} | "
             f"{np.percentile(after, 50):.1f} / {np.percentile(after, 99):.1f} | {normal:.0f} | {back:.0f} s |"]
    single_ms = [ms for t, ms, status in single if status == 200 and t >= 2]
    single_rps = len(single_ms) / 18
    lines += ["", "The same load on one broker and on the three nodes before the kill (their p50 includes the mock's "
              "own time, the same in both):", "",
              "| Kafka | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|",
              f"| 1 broker | {single_rps:.0f} | {np.percentile(single_ms, 50):.1f} | "
              f"{np.percentile(single_ms, 99):.1f} |",
              f"| 3 nodes, 3 replicas, min.insync 2 | {normal:.0f} | {np.percentile(before, 50):.1f} | "
              f"{np.percentile(before, 99):.1f} |"]
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
