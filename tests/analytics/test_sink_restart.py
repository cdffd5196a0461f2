"""The sink killed between its insert and its commit: the restarted sink is handed the same events again
and inserts none of them twice (real broker, real chDB)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from analytics.sink import AnalyticsSink
from analytics.store import Store
from infra import kafka_clients
from infra.config import Environment, GatewayConfig, Settings
from schemas import codec


def usage(i: int) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {"event_id": f"gw-{i}", "request_id": f"gw-{i}", "project": "proj-a", "key_id": "key_x", "model": "gpt-4o",
            "provider": "openai", "status": "ok", "error_code": None, "prompt_tokens": 10, "completion_tokens": 5,
            "total_tokens": 15, "cost_usd": 0.0001, "latency_ms": 12.0, "attempts": 1, "recorded_at_ms": now,
            "cached_tokens": 0, "reasoning_tokens": 0, "ttft_ms": None}


async def _scenario(bootstrap: str, store: Store, settings: Settings, events: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for i in range(events):
        await producer.send(settings.topics.usage, codec.encode("UsageRecorded", usage(i)), key=b"proj-a",
                            headers=codec.headers("UsageRecorded"))
    await producer.flush()
    await producer.stop()

    first = AnalyticsSink(settings, store)
    await first.restore()
    await first._consumer.start()
    first._consumer.subscribe([settings.topics.usage, settings.topics.attempts])
    fetched = []
    while len(fetched) < events:
        fetched += await first._fetch()
    await first._store(first._batch(fetched))
    await first._consumer.stop()  # killed: the insert is in the store, the commit never happened

    second = AnalyticsSink(settings, store)
    running = asyncio.create_task(second.run())
    for _ in range(300):  # up to 30 s
        if second.duplicates >= events:
            break
        await asyncio.sleep(0.1)
    running.cancel()
    assert second.duplicates == events and second.inserted == 0


def test_a_sink_killed_between_insert_and_commit_inserts_nothing_twice(bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(GatewayConfig.model_validate({"keys": [{"key": "sk-12345678", "project": "p"}]}),
                        Environment(gateway_topic_prefix=f"sink-{uuid.uuid4().hex[:6]}.",
                                    kafka_bootstrap_servers=bootstrap), tmp_path / "gateway.yaml")
    asyncio.run(kafka_clients.ensure_topics(bootstrap, settings.topics))
    store = Store(None, tmp_path / "store")
    store.migrate()

    asyncio.run(_scenario(bootstrap, store, settings, 200))

    assert store.query("SELECT count() FROM requests")[1] == [(200,)]  # no FINAL: no duplicate row exists
    assert store.query("SELECT sum(requests) FROM usage_by_minute")[1] == [(200,)]
    store.close()
