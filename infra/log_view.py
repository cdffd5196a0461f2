"""Views of the log: state folded from a topic's records, restored at start by reading the topic from its
beginning, then kept current by following it. Every stateful part of the gateway (reply-partition
leases today; keys, limits, budgets and statistics as they come) is one `fold` function over one
topic, tested without Kafka; this module is the only place that reads a topic into memory.

A view has no consumer group: every process that holds one reads every partition itself, so each
instance converges on the same state, and deleting nothing but memory and replaying rebuilds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra import kafka_clients
from infra.config import Kafka
from schemas import codec

log = logging.getLogger("gateway.views")
S = TypeVar("S")


@dataclass(frozen=True)
class Change:
    """One record of the topic as a fold sees it: `event` and `record` are None for a tombstone."""

    key: bytes
    event: str | None
    record: dict[str, Any] | None  # None too when the view reads headers only (`decode=False`)
    timestamp_ms: int
    offset: int
    headers: dict[str, bytes]


Fold = Callable[[S, Change], None]


class LogView(Generic[S]):
    def __init__(self, bootstrap: str, topic: str, fold: Fold[S], state: S,
                 kafka: Kafka = kafka_clients.DEFAULTS, since_ms: int | None = None, decode: bool = True,
                 lag_ms: int = 0) -> None:
        """`since_ms`: restore from the records written since then, not from the beginning (a view of
        recent events on a topic that keeps days). `decode=False`: the fold needs key and headers only.
        `lag_ms`: the view may trail the topic by that long (it then costs a few fetches a second instead of
        one per record; see `kafka_clients.consumer`)."""
        self.state = state
        self._lag_ms = lag_ms
        self._since_ms = since_ms
        self._decode = decode
        self._bootstrap = bootstrap
        self._topic = topic
        self._fold = fold
        self._kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._applied: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        """Restore: read the topic from its beginning to its current end, then follow it."""
        self._consumer = kafka_clients.consumer(self._bootstrap, self._kafka, lag_ms=self._lag_ms)
        self._producer = kafka_clients.producer(self._bootstrap, kafka=self._kafka)
        await self._consumer.start()
        await self._producer.start()
        partitions = [TopicPartition(self._topic, p) for p in
                      sorted(await self._producer.partitions_for(self._topic))]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        if self._since_ms is not None:
            found = await self._consumer.offsets_for_times({tp: self._since_ms for tp in partitions})
            ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                self._consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
        self._follower = asyncio.create_task(self._follow())
        await self.sync()

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, key: bytes, event: str | None, record: dict[str, Any] | None) -> None:
        """Append a change (None: a tombstone) and return once this view has folded it in."""
        assert self._producer is not None, "publish() before start()"
        payload = codec.encode(event, record) if event and record is not None else None
        headers = codec.headers(event) if event and record is not None else []
        metadata = await self._producer.send_and_wait(self._topic, payload, key=key, headers=headers)
        await self._applied_past({TopicPartition(self._topic, metadata.partition): metadata.offset + 1})

    async def sync(self) -> None:
        """Return once every record on the topic now has been folded in (read your writes, and others')."""
        assert self._consumer is not None, "sync() before start()"
        await self._applied_past(await self._consumer.end_offsets(list(self._consumer.assignment())))

    async def _applied_past(self, ends: dict[TopicPartition, int]) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: all(self._applied.get(tp, 0) >= end for tp, end in ends.items()))

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200)
            except KafkaError as exc:
                log.warning("reading %s failed (%s); reading again", self._topic, exc)
                await asyncio.sleep(0.5)
                continue
            for tp, records in batch.items():
                for record in records:
                    self._apply(record)
                    self._applied[tp] = record.offset + 1
            positions = {tp: await self._consumer.position(tp) for tp in self._consumer.assignment()}
            async with self._progress:
                for tp, position in positions.items():
                    self._applied[tp] = max(self._applied.get(tp, 0), position)
                self._progress.notify_all()

    def _apply(self, record: Any) -> None:
        try:
            headers = {k: bytes(v) for k, v in record.headers or ()}
            if self._decode and record.value is not None:
                event, value = codec.decode(record.headers, record.value)
            else:
                event, value = codec.header(record.headers, codec.EVENT_HEADER), None
            self._fold(self.state, Change(record.key or b"", event, value, record.timestamp, record.offset, headers))
        except Exception as exc:  # one bad record must not stop a view: it is skipped, loudly
            log.error("skipping record %s@%d of %s: %r", record.partition, record.offset, self._topic, exc)
