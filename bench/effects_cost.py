"""CPU the router spends putting a request's effects on Kafka, measured in one process against the real broker:
a request's audit records (its attempt and its usage, through the router's record batcher and audit producer,
64 requests at once) and a stream's chunks (through the reply producer and the stream's coalescer, 200 streams
of 64 tokens 20 ms apart), with the cycle collector set as in the router. The figure is this process's CPU time
per request or per token, so the other processes on the machine (the broker excepted, which it does not count)
do not blur it; rounds alternate to show the drift.

    python -m bench.effects_cost [--rounds 3]

Written to size changes to `processors/effects.py` and `processors/chunks.py` (a change is judged by running
this before and after, in the same hour).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from bench.stack import delete_topics
from infra import heap, kafka_broker, kafka_clients
from infra.config import Environment, GatewayConfig, Settings
from infra.record_batcher import RecordBatcher
from processors import effects
from processors.chunks import ChunkCoalescer
from processors.router import AUDIT_LINGER_MS

COMMON = {"project": "bench", "model": "gpt-4o-mini", "provider": "openai"}
ATTEMPT = {**COMMON, "attempt_no": 1, "started_at_ms": 1, "duration_ms": 4.0, "outcome": "ok"}
USAGE = {**COMMON, "key_id": "key_bench", "status": "ok", "prompt_tokens": 12, "completion_tokens": 20,
         "total_tokens": 32, "cost_usd": 0.0001, "latency_ms": 5.0, "attempts": 1, "recorded_at_ms": 1}


async def _cpu_per(unit_count: int, work: Callable[[], Awaitable[object]]) -> float:
    started = time.process_time()
    await work()
    return (time.process_time() - started) / unit_count * 1e6


async def _audits(settings: Settings, producer: RecordBatcher, requests: int, concurrency: int = 64) -> float:
    """µs of CPU per request to produce its attempt and usage records and wait for them to be held."""
    topics = settings.topics
    numbers = iter(range(requests))

    async def worker() -> None:
        for i in numbers:
            request_id = f"gw-{i:032x}"
            key = request_id.encode()
            await effects._produce_all([
                effects._sender(producer, topics.attempts, "AttemptFinished",
                                {**ATTEMPT, "attempt_id": f"{i:032x}", "request_id": request_id}, key, None),
                effects._sender(producer, topics.usage, "UsageRecorded",
                                {**USAGE, "event_id": request_id, "request_id": request_id}, b"bench", None,
                                [("request-id", key)]),
            ], budget_s=30)

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return await _cpu_per(requests, run)


async def _chunks(out: effects.Effects, replies: str, streams: int, tokens: int = 64, gap_s: float = 0.02) -> float:
    """µs of CPU per token a stream sends through its coalescer onto the reply topic."""
    async def stream(i: int) -> None:
        request = {"request_id": f"gw-{i:032x}", "project": "bench", "reply_topic": replies, "reply_partition": i % 8}
        coalescer = ChunkCoalescer(lambda chunk: out.chunk(request, chunk, None))
        for _ in range(tokens):
            await coalescer.add({"request_id": request["request_id"], "project": "bench", "run_id": "run",
                                 "model": "gpt-4o-mini", "provider": "openai", "content": "tok ", "tool_calls": [],
                                 "finish_reason": None})
            await asyncio.sleep(gap_s)
        await coalescer.flush()
        await asyncio.gather(*coalescer.sent)

    async def run() -> None:
        await asyncio.gather(*(stream(i) for i in range(streams)))
    return await _cpu_per(streams * tokens, run)


async def _measure(rounds: int) -> list[tuple[float, float]]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_broker.start()
    prefix = f"bench-effects-{os.getpid()}."
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-bench-effects", "project": "bench"}]})
    settings = Settings(config, Environment(gateway_topic_prefix=prefix), Path("gateway.yaml"))
    await kafka_clients.ensure_topics(bootstrap, settings.topics)
    replies = kafka_clients.producer(bootstrap, request_path=True)
    audit = kafka_clients.producer(bootstrap, linger_ms=AUDIT_LINGER_MS)
    await replies.start()
    await audit.start()
    try:
        audit_records = RecordBatcher(audit, AUDIT_LINGER_MS / 1000)  # as the router sends them
        out = effects.Effects(settings, replies, audit_records)
        await _audits(settings, audit_records, 1000)  # warm-up: connections, metadata, the codec's schemas
        await _chunks(out, settings.topics.replies, 20)
        heap.serving()  # the cycle collector set as the router's is
        return [(await _audits(settings, audit_records, 6000), await _chunks(out, settings.topics.replies, 200))
                for _ in range(rounds)]
    finally:
        await replies.stop()
        await audit.stop()
        await delete_topics(bootstrap, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rows = uvloop.run(_measure(parser.parse_args().rounds))
    print("\nThe router's effects on Kafka, CPU of this one process (real broker)\n")
    print("| round | audit records, µs per request | stream chunks, µs per token |")
    print("|---:|---:|---:|")
    for i, (audits, chunks) in enumerate(rows, 1):
        print(f"| {i} | {audits:.1f} | {chunks:.1f} |")


if __name__ == "__main__":
    main()
