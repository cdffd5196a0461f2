"""The audit trail's batcher on the real broker: records sent at once are held by Kafka once each, where the
producer's partitioner puts their keys, in one batch per partition; a sender cancelled while waiting takes no
one else's record with it; large records and topics the producer has no metadata for yet go through `send()`;
a stopped producer fails the senders instead of leaving them waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra import kafka_clients
from infra.partitioner import partition
from infra.record_batcher import RecordBatcher
from tests.kafka_events import new_topic

PARTITIONS = 3


async def _read(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        records: list[Any] = []
        async with asyncio.timeout(20):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        await asyncio.sleep(0.5)  # nothing more comes
        records.extend(r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch)
        return records
    finally:
        await consumer.stop()


def _with_batcher(bootstrap: str, test: Callable[[RecordBatcher, str], Awaitable[None]],
                  largest_batched: int = 64 << 10) -> None:
    async def run() -> None:
        topic = await new_topic(bootstrap, "test-batcher", PARTITIONS)
        producer = kafka_clients.producer(bootstrap)
        await producer.start()
        try:
            await producer.partitions_for(topic)
            await test(RecordBatcher(producer, 0.05, largest_batched), topic)
        finally:
            await producer.stop()
    asyncio.run(run())


def _count_batches(producer: AIOKafkaProducer) -> list[int]:
    """How many records each batch handed to the producer held."""
    sizes: list[int] = []
    send_batch = producer.send_batch

    async def counted(builder: Any, topic: str, *, partition: int) -> Any:
        sizes.append(builder.record_count())
        return await send_batch(builder, topic, partition=partition)
    producer.send_batch = counted  # type: ignore[method-assign]
    return sizes


def test_records_sent_at_once_are_held_once_each_where_their_keys_go_in_one_batch_per_partition(
        bootstrap: str) -> None:
    async def test(batcher: RecordBatcher, topic: str) -> None:
        sizes = _count_batches(batcher.producer)
        keys = [f"gw-{i:032x}".encode() for i in range(300)]

        async def sender(key: bytes) -> None:
            await (await batcher.send(topic, b"usage of " + key, key=key, headers=[("event", b"UsageRecorded")]))
        await asyncio.gather(*(sender(key) for key in keys))

        records = await _read(bootstrap, topic, len(keys))
        assert sorted(r.value for r in records) == sorted(b"usage of " + key for key in keys)
        for record in records:
            assert record.partition == partition(record.key, list(range(PARTITIONS)), [])
            assert record.headers == (("event", b"UsageRecorded"),)
        assert sorted(sizes) == sorted(sum(1 for r in records if r.partition == p) for p in range(PARTITIONS))
    _with_batcher(bootstrap, test)


def test_a_sender_cancelled_while_waiting_leaves_the_others_in_its_batch_delivered(bootstrap: str) -> None:
    async def test(batcher: RecordBatcher, topic: str) -> None:
        sent = [await batcher.send(topic, b"record %d" % i, partition=0) for i in range(10)]
        sent[3].cancel()
        await asyncio.gather(*sent[:3], *sent[4:])

        records = await _read(bootstrap, topic, 10)
        assert sorted(r.value for r in records) == sorted(b"record %d" % i for i in range(10))
    _with_batcher(bootstrap, test)


def test_a_large_record_and_a_topic_without_metadata_yet_go_through_send(bootstrap: str) -> None:
    async def test(batcher: RecordBatcher, topic: str) -> None:
        sizes = _count_batches(batcher.producer)
        fresh = await new_topic(bootstrap, "test-batcher", PARTITIONS)
        large = b"x" * 500
        await asyncio.gather(await batcher.send(topic, large, key=b"k1"),
                             await batcher.send(fresh, b"first", key=b"k2"))

        assert [r.value for r in await _read(bootstrap, topic, 1)] == [large]
        assert [r.value for r in await _read(bootstrap, fresh, 1)] == [b"first"]
        assert sizes == []  # neither was batched
        await (await batcher.send(fresh, b"second", key=b"k2"))  # its metadata is known now
        assert sizes == [1]
    _with_batcher(bootstrap, test, largest_batched=400)


def test_a_stopped_producer_fails_its_senders_instead_of_leaving_them_waiting(bootstrap: str) -> None:
    async def test(batcher: RecordBatcher, topic: str) -> None:
        await (await batcher.send(topic, b"before", key=b"k"))
        await batcher.producer.stop()
        waiting = await batcher.send(topic, b"after", key=b"k")
        with pytest.raises(KafkaError):
            await asyncio.wait_for(waiting, 5)
    _with_batcher(bootstrap, test)
