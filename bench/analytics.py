"""The analytics sink's speed: usage events per second from Kafka into chDB (with its materialized views)
at several batch sizes, and the delay from a usage event's produce to its row being queryable.

    python -m bench.analytics [--events 200000] [--batches 2000,20000,50000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from analytics.sink import AnalyticsSink
from analytics.store import Store
from infra import kafka_broker, kafka_clients
from infra.config import Environment, GatewayConfig, Settings
from schemas import codec

HERE = Path(__file__).resolve().parent


def _settings(bootstrap: str, batch_max: int, linger_ms: int) -> Settings:
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-bench-key", "project": "bench"}],
                                           "analytics": {"batch_max": batch_max, "linger_ms": linger_ms}})
    env = Environment(gateway_topic_prefix=f"abench-{uuid.uuid4().hex[:6]}.", kafka_bootstrap_servers=bootstrap)
    return Settings(config, env, Path("bench.yaml"))


def _usage(i: int, now: int) -> dict[str, object]:
    return {"event_id": f"e{i}-{uuid.uuid4().hex[:8]}", "request_id": f"r{i}", "project": f"p{i % 7}",
            "key_id": "key_bench", "model": ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514")[i % 3],
            "provider": "openai", "status": "ok" if i % 20 else "error", "error_code": None, "prompt_tokens": 100,
            "completion_tokens": 50, "total_tokens": 150, "cost_usd": 0.0001, "latency_ms": float(i % 1000),
            "attempts": 1, "recorded_at_ms": now, "cached_tokens": 0, "reasoning_tokens": 0, "ttft_ms": 20.0,
            "user": f"u{i % 50}", "stream": bool(i % 2), "operation": "chat"}


async def _produce(settings: Settings, events: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20, compression_type="zstd",
                                max_batch_size=1 << 20)
    await producer.start()
    now = int(time.time() * 1000)
    for i in range(events):
        await producer.send(settings.topics.usage, codec.encode("UsageRecorded", _usage(i, now)),
                            key=f"p{i % 7}".encode(), headers=codec.headers("UsageRecorded"))
    await producer.flush()
    await producer.stop()


async def _throughput(bootstrap: str, events: int, batch_max: int) -> tuple[float, float]:
    settings = _settings(bootstrap, batch_max, 200)
    await kafka_clients.ensure_topics(bootstrap, settings.topics)
    await _produce(settings, events)
    store = Store(None, Path(tempfile.mkdtemp(prefix="abench-")) / "store")
    store.migrate()
    sink = AnalyticsSink(settings, store)
    started = time.perf_counter()
    task = asyncio.create_task(sink.run())
    while sink.inserted < events:  # noqa: ASYNC110 (a counter the sink task advances)
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    task.cancel()
    rows = store.query("SELECT sum(requests) FROM usage_by_minute")[1][0][0]
    store.close()
    assert rows == events, rows
    return events / elapsed, elapsed


async def _visibility(bootstrap: str, samples: int) -> list[float]:
    settings = _settings(bootstrap, 20000, 20)
    await kafka_clients.ensure_topics(bootstrap, settings.topics)
    store = Store(None, Path(tempfile.mkdtemp(prefix="abench-")) / "store")
    store.migrate()
    sink = AnalyticsSink(settings, store)
    task = asyncio.create_task(sink.run())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    delays = []
    for i in range(samples):
        event = _usage(i, int(time.time() * 1000))
        started = time.perf_counter()
        await producer.send_and_wait(settings.topics.usage, codec.encode("UsageRecorded", event), key=b"p",
                                     headers=codec.headers("UsageRecorded"))
        query = "SELECT count() FROM requests WHERE event_id = {id:String}"
        while (await asyncio.to_thread(store.query, query, {"id": event["event_id"]}))[1][0][0] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        delays.append((time.perf_counter() - started) * 1000)
    await producer.stop()
    task.cancel()
    store.close()
    return sorted(delays)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batches", default="2000,20000,50000")
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    bootstrap = kafka_broker.start()
    lines = ["| batch_max | events | seconds | events/s |", "|---:|---:|---:|---:|"]
    for batch in (int(b) for b in args.batches.split(",")):
        rate, elapsed = asyncio.run(_throughput(bootstrap, args.events, batch))
        lines.append(f"| {batch:,} | {args.events:,} | {elapsed:.2f} | {rate:,.0f} |")
        print(lines[-1], flush=True)
    delays = asyncio.run(_visibility(bootstrap, args.samples))
    p50, p99 = delays[len(delays) // 2], delays[min(int(len(delays) * 0.99), len(delays) - 1)]
    table = "\n".join(lines) + (f"\n\nproduce → queryable (linger 20 ms), {len(delays)} samples: "
                                f"p50 {p50:.0f} ms, max {delays[-1]:.0f} ms, p99 {p99:.0f} ms")
    print(table)
    out = HERE / "results" / f"analytics-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.write_text(f"`python -m bench.analytics --events {args.events} --batches {args.batches}`\n\n{table}\n")
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
