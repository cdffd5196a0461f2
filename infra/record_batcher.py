"""Records that may wait a little (the audit trail) gathered into one batch per partition by us, not one
`AIOKafkaProducer.send()` each.

`send()` costs some 15-20 µs of Python per record on this machine (the metadata wait, the serializer's size
check, the partitioner's sets, the accumulator's bookkeeping, a future per record set on the acknowledgement)
against under 3 µs to append the record to a batch; the router sends an attempt and a usage record for every
request. Here a record is appended to its partition's open batch and gets a future of its own, settled with the
batch's acknowledgement. The batch goes to the producer (`send_batch`, closed, so the producer neither adds to
it nor lingers on it) once it is `linger_s` old and the partition's batch before it is held by Kafka: one batch
per partition with the producer at a time, what is sent meanwhile waits in the next (the producer keeps one
request in flight per broker anyway). `python -m bench.effects_cost`: a request's two audit records 121-133 →
75-83 µs of CPU (`bench/results/batcher-20261201.md`).

Not for the request path: with no linger, handing each batch over once the last is held costs the caller a turn
of the event loop per round trip, and a closed loop of 64 senders measured 20-70 % more CPU per record than
`send()`.

A large record (its value over `largest_batched`), an unkeyed one, or one for a topic or partition the producer
has no metadata for goes through `send()` unchanged, with its checks and errors. The future resolves to None
once Kafka holds the record (not to its offset).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from infra.partitioner import partition as placed

Headers = list[tuple[str, bytes]]  # a list: the batch builder takes no other sequence
LARGEST_BATCHED = 64 << 10  # a record's value; larger go through send() (keys and headers are small beside 1 MiB)
TopicPartition = tuple[str, int]


class _Batch:
    """Its records' futures: one each, so that a sender cancelled while waiting cancels only its own."""

    __slots__ = ("born", "builder", "delivered")

    def __init__(self, builder: BatchBuilder, born: float) -> None:
        self.builder = builder
        self.delivered: list[asyncio.Future[None]] = []
        self.born = born

    def settle(self, error: BaseException | None) -> None:
        for delivered in self.delivered:
            if delivered.done():
                continue
            if error is None:
                delivered.set_result(None)
            elif isinstance(error, asyncio.CancelledError):
                delivered.cancel()
            else:
                delivered.set_exception(error)


class _Partition:
    """One partition's batches not yet with the producer (only the last one open), and whether one is (handed
    over and not yet held by Kafka, or lingering)."""

    __slots__ = ("batches", "busy")

    def __init__(self) -> None:
        self.batches: deque[_Batch] = deque()
        self.busy = False


class RecordBatcher:
    def __init__(self, producer: AIOKafkaProducer, linger_s: float, largest_batched: int = LARGEST_BATCHED) -> None:
        self.producer = producer
        self._linger_s = linger_s
        self._largest = largest_batched
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._topics: dict[str, tuple[list[int], frozenset[int]]] = {}  # sorted partitions, and as a set
        self._handovers: set[asyncio.Task[None]] = set()
        producer.client.cluster.add_listener(self._metadata_changed)

    def _metadata_changed(self, _cluster: object) -> None:
        self._topics.clear()

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                   headers: Headers | None = None) -> asyncio.Future[Any]:
        """As `AIOKafkaProducer.send` (a keyed record lands where the producer's partitioner puts it); the
        future is done once Kafka holds the record."""
        known = self._known(topic)
        headers = headers or []
        if known is None or len(value) > self._largest or (key is None and partition is None) \
                or (partition is not None and partition not in known[1]):
            return await self.producer.send(topic, value, key=key, partition=partition, headers=headers)
        if partition is None:
            partition = placed(key, known[0], known[0])
        tp = (topic, partition)
        state = self._partitions.get(tp)
        if state is None:
            state = self._partitions[tp] = _Partition()
        delivered = self._append(state, key, value, headers)
        if not state.busy:
            state.busy = True
            asyncio.get_running_loop().call_later(self._linger_s, self._hand_over, tp, state)
        return delivered

    def _known(self, topic: str) -> tuple[list[int], frozenset[int]] | None:
        known = self._topics.get(topic)
        if known is None:
            partitions = self.producer.client.cluster.partitions_for_topic(topic)
            if not partitions:
                return None
            known = self._topics[topic] = (sorted(partitions), frozenset(partitions))
        return known

    def _append(self, state: _Partition, key: bytes | None, value: bytes, headers: Headers) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        batches = state.batches
        batch = batches[-1] if batches else None
        if batch is None or batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            batch = _Batch(self.producer.create_batch(), loop.time())
            batch.builder.append(timestamp=None, key=key, value=value, headers=headers)  # fits: under largest_batched
            batches.append(batch)
        delivered: asyncio.Future[None] = loop.create_future()
        batch.delivered.append(delivered)
        return delivered

    def _hand_over(self, tp: TopicPartition, state: _Partition) -> None:
        task = asyncio.get_running_loop().create_task(self._give(tp, state))
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _give(self, tp: TopicPartition, state: _Partition) -> None:
        """The oldest batch to the producer; the next goes once Kafka holds this one (`_next`)."""
        batch = state.batches.popleft()
        batch.builder.close()
        try:
            held = await self.producer.send_batch(batch.builder, tp[0], partition=tp[1])
        except asyncio.CancelledError:  # the loop closing: not with the producer, nobody left to tell
            state.batches.appendleft(batch)
            raise
        except Exception as exc:  # the producer closed, or no metadata: its senders' error
            batch.settle(exc)
            self._next(tp, state)
        else:
            held.add_done_callback(lambda done: self._held(tp, state, batch, done))

    def _held(self, tp: TopicPartition, state: _Partition, batch: _Batch, held: asyncio.Future[Any]) -> None:
        batch.settle(asyncio.CancelledError() if held.cancelled() else held.exception())
        self._next(tp, state)

    def _next(self, tp: TopicPartition, state: _Partition) -> None:
        """What was sent meanwhile goes once its batch is `linger_s` old (at once if it is full)."""
        if not state.batches:
            state.busy = False
            return
        loop = asyncio.get_running_loop()
        head = state.batches[0]
        wait = 0.0 if head.builder.closed() else head.born + self._linger_s - loop.time()
        if wait > 0:
            loop.call_later(wait, self._hand_over, tp, state)
        else:
            self._hand_over(tp, state)
