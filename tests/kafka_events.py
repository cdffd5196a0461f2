"""Read back what the gateway wrote to a topic, decoded with the project's codec."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import codec


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
