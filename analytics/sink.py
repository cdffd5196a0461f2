"""The analytics sink: a view of the usage and attempts topics in ClickHouse. It consumes both (consumer
group `<prefix>analytics`), inserts in batches, and commits offsets only after the insert. An event
delivered twice counts once: the sink remembers the ids it inserted (restored from the store at start,
`analytics.dedup_window_h` back) and never inserts one again, so a sink killed between its insert and
its commit, a producer's retry, or a request run twice by a killed router changes no total; the
tables' ReplacingMergeTree engine is a second guard for reads with FINAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from analytics.rows import attempt_row, request_row
from analytics.store import Store
from infra import kafka_clients, metrics
from infra.config import Settings
from schemas import codec

log = logging.getLogger("gateway.analytics")


class SeenIds:
    """Ids inserted within a time window, oldest first."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, ids: set[str] | list[str], now: float) -> None:
        for event_id in ids:
            self._ids[event_id] = now
        while self._ids and next(iter(self._ids.values())) < now - self._window_s:
            self._ids.popitem(last=False)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids


class Batch:
    """One fetch's events as rows, without the ids already inserted or repeated within it."""

    def __init__(self) -> None:
        self.requests: dict[str, tuple[Any, ...]] = {}
        self.attempts: dict[str, tuple[Any, ...]] = {}
        self.skipped = 0

    def add(self, event: str, record: dict[str, Any], seen: SeenIds) -> None:
        if event == "UsageRecorded" and record["event_id"] not in seen:
            self.requests[record["event_id"]] = request_row(record)
        elif event == "AttemptFinished" and record["attempt_id"] not in seen:
            self.attempts[record["attempt_id"]] = attempt_row(record)
        else:
            self.skipped += 1


def _next_offsets(records: list[ConsumerRecord[bytes, bytes]]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


class AnalyticsSink:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        analytics = settings.config.analytics
        self._batch_max = analytics.batch_max
        self._linger_ms = analytics.linger_ms
        self._window_s = analytics.dedup_window_h * 3600
        self.seen = SeenIds(self._window_s)
        self.inserted = 0
        self.duplicates = 0
        self.undecodable = 0
        self.last_insert_at = 0.0
        self._consumer = kafka_clients.consumer(
            settings.bootstrap_servers, settings.config.kafka, group_id=settings.env.gateway_topic_prefix + "analytics",
            auto_offset_reset="earliest", max_poll_records=analytics.batch_max, lag_ms=min(analytics.linger_ms, 500))

    async def restore(self) -> None:
        """Remember what the store already holds (a restart must not insert it again)."""
        since = datetime.now(UTC) - timedelta(seconds=self._window_s)
        held = await asyncio.to_thread(self.store.recent_ids, "requests", "event_id", "recorded_at", since)
        held |= await asyncio.to_thread(self.store.recent_ids, "attempts", "attempt_id", "started_at", since)
        self.seen.add(held, time.time())
        log.info("analytics sink remembers %d ids already in the store", len(held))

    async def run(self, replay: bool = False) -> None:
        """`replay`: the store is new (or was deleted): read both topics from their beginning, whatever
        the group had committed, and so rebuild every table and view."""
        await self.restore()
        await self._consumer.start()
        listener = kafka_clients.ReplayOnFirstAssignment(self._consumer, "analytics store") if replay else None
        await kafka_clients.subscribe(self._consumer, [self.settings.topics.usage, self.settings.topics.attempts],
                                      listener)
        # Pipelined: a batch is inserted (in a thread) while the next is fetched and decoded; each batch's
        # offsets are committed only once its insert is done.
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                records = await self._fetch()
                batch = self._batch(records) if records else None
                if writing is not None:
                    await writing
                    writing = None
                if batch is not None:
                    writing = asyncio.create_task(self._write(batch, _next_offsets(records)))
        finally:
            if writing is not None:
                writing.cancel()
            await self._consumer.stop()

    async def _fetch(self) -> list[ConsumerRecord[bytes, bytes]]:
        """Up to `batch_max` records: once the first has come, whatever else comes within `linger_ms` (each
        insert has a fixed cost in parts and merges, so few large ones are far cheaper than many small)."""
        first = await self._consumer.getmany(timeout_ms=1000, max_records=self._batch_max)
        records = [r for rs in first.values() for r in rs]
        deadline = time.monotonic() + self._linger_ms / 1000
        while records and len(records) < self._batch_max and (left := deadline - time.monotonic()) > 0:
            more = await self._consumer.getmany(timeout_ms=int(left * 1000) + 1,
                                                max_records=self._batch_max - len(records))
            records += [r for rs in more.values() for r in rs]
        return records

    def _batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> Batch:
        """Decode and deduplicate; the ids are remembered at once, so the next batch (decoded while this one
        is inserted) skips them too."""
        batch = Batch()
        for record in records:
            try:
                event, value = codec.decode(record.headers, record.value or b"")
                batch.add(event, value, self.seen)
            except Exception as exc:  # a record no reader can use must not stop the sink
                self.undecodable += 1
                log.error("skipping record %s@%d of %s: %r", record.partition, record.offset, record.topic, exc)
        self.seen.add([*batch.requests, *batch.attempts], time.time())
        self.duplicates += batch.skipped
        metrics.ANALYTICS_EVENTS.labels("duplicate").inc(batch.skipped)
        return batch

    async def _store(self, batch: Batch) -> None:
        if batch.requests:
            await asyncio.to_thread(self.store.insert_requests, list(batch.requests.values()))
        if batch.attempts:
            await asyncio.to_thread(self.store.insert_attempts, list(batch.attempts.values()))
        self.inserted += len(batch.requests) + len(batch.attempts)
        metrics.ANALYTICS_EVENTS.labels("inserted").inc(len(batch.requests) + len(batch.attempts))
        self.last_insert_at = time.time()

    async def _write(self, batch: Batch, offsets: dict[TopicPartition, int]) -> None:
        await self._store(batch)
        await self._consumer.commit(offsets)  # only now: this batch is in the store
