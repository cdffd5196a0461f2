"""Read back what the gateway wrote to a topic, decoded with the project's codec; make a topic of a test's own;
a request as the test config's `billing` service writes it onto the requests topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from infra import kafka_clients
from schemas import codec


async def new_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """A topic no other test writes to, named `<prefix>-<random>`."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _read(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[str, dict[str, Any]]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    with contextlib.suppress(codec.UnknownEvent, ValueError, EOFError):  # garbage some tests write
                        out.append(codec.decode(r.headers, r.value or b""))
        return out
    finally:
        await consumer.stop()


def read_events(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    return asyncio.run(_read(bootstrap, topic))


def events_of(bootstrap: str, topic: str, request_ids: set[str], expect: int = 1, timeout_s: float = 10
              ) -> list[dict[str, Any]]:
    """The events of these requests on a topic, once each of them has `expect` there: the audit trail (attempts,
    usage) follows the answers by up to the router's linger. What is there at the deadline otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [event for _, event in read_events(bootstrap, topic) if event["request_id"] in request_ids]
        counts = Counter(event["request_id"] for event in found)
        if all(counts[request_id] >= expect for request_id in request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def service_request(reply_topic: str, model: str, fallback: list[str], **fields: Any) -> dict[str, Any]:
    """A RequestReceived from the `billing` service (tests.conftest.write_config declares it), answered on
    `reply_topic`."""
    now = int(time.time() * 1000)
    return {"request_id": str(uuid.uuid4()), "project": "billing", "key_id": "service:billing",
            "received_at_ms": now, "deadline_ms": now + 30_000, "reply_topic": reply_topic,
            "model": model, "fallback": fallback, "max_tokens": 64,
            "messages": [{"role": "user", "content": "Summarise invoice 42"}], **fields}
