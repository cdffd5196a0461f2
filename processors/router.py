"""The router worker: for each RequestReceived, call the providers and emit the reply, the attempts and
the usage; commit the request's offset only after those are on Kafka.

Plain aiokafka, not a faust agent: this is the latency-critical path (see README, "Why aiokafka").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import OrderedDict
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from infra import kafka_clients
from infra.config import Settings
from processors.catalog import load_catalog
from processors.handler import OPERATIONS, Outcome, RequestHandler, now_ms
from processors.offsets import OffsetTracker
from processors.routing import RouteTable
from processors.upstream import Upstreams
from schemas import codec

log = logging.getLogger("gateway.router")


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, worker: RouterWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.commit()
        self._worker.offsets.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("router assigned %s", sorted(tp.partition for tp in assigned))


class RouterWorker:
    def __init__(self, settings: Settings, instance_id: str | None = None) -> None:
        self.settings = settings
        self.offsets = OffsetTracker()
        self._instance_id = instance_id
        self._slots = asyncio.Semaphore(settings.config.router.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # cancels that came before their request
        self._stopping = asyncio.Event()
        self._upstreams = Upstreams(settings.config.providers)
        routes = RouteTable(settings.config, load_catalog(settings.config.catalog))
        self._handler = RequestHandler(settings, routes, self._upstreams)
        self._producer = kafka_clients.producer(settings.bootstrap_servers)
        self._audit = kafka_clients.producer(settings.bootstrap_servers, linger_ms=5)
        self._consumer = kafka_clients.consumer(
            settings.bootstrap_servers,
            group_id=settings.router_group,
            group_instance_id=instance_id,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
        )

    async def run(self) -> None:
        await self._producer.start()
        await self._audit.start()
        await self._consumer.start()
        self._consumer.subscribe([self.settings.topics.requests], listener=_CommitOnRevoke(self))
        committer = asyncio.create_task(self._commit_loop())
        log.info("router consuming %s as %s", self.settings.topics.requests, self._instance_id or "dynamic member")
        try:
            await self._consume()
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            committer.cancel()
            await self.commit()
            await self._consumer.stop()
            await self._producer.stop()
            await self._audit.stop()
            await self._upstreams.aclose()

    def stop(self) -> None:
        self._stopping.set()

    async def _consume(self) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                fetch = asyncio.create_task(self._consumer.getmany(timeout_ms=1000))
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    break
                for tp, records in fetch.result().items():
                    for record in records:
                        await self._slots.acquire()  # back-pressure: no more fetches while full
                        self.offsets.started(tp, record.offset)
                        task = asyncio.create_task(self._process(tp, record))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
        finally:
            stop.cancel()

    async def _process(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            try:
                event, request = codec.decode(record.headers, record.value or b"")
            except (codec.UnknownEvent, ValueError, EOFError) as exc:
                log.error("skipping undecodable record %s@%d: %s", tp, record.offset, exc)
                return
            if event == "RequestCancelled":
                self._cancel(request["request_id"])
                return
            if event not in OPERATIONS:
                log.error("skipping %s at %s@%d: not a request", event, tp, record.offset)
                return
            traceparent = codec.header(record.headers, codec.TRACEPARENT_HEADER)
            chunks: list[asyncio.Future[Any]] = []

            async def send_chunk(chunk: dict[str, Any]) -> None:
                chunks.append(await self._send_reply(request, "ResponseChunk", chunk, traceparent))

            request_id = request["request_id"]
            cancelled_before = request_id in self._cancelled
            if request["deadline_ms"] <= now_ms() or cancelled_before:
                self._cancelled.pop(request_id, None)
                outcome = self._handler.expired(request)
            else:
                self._running[request_id] = asyncio.current_task()  # type: ignore[assignment]
                try:
                    outcome = await self._handler.handle(event, request, send_chunk)
                except asyncio.CancelledError:  # cancelled between provider calls: nothing more to record
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    outcome = self._handler.expired(request)
                finally:
                    self._running.pop(request_id, None)
            await self._emit(request, outcome, traceparent, chunks)
            self.offsets.done(tp, record.offset)
        except KafkaError:
            log.exception("could not emit the effects of %s@%d; it will be redelivered", tp, record.offset)
        except Exception:
            log.exception("request at %s@%d failed unexpectedly", tp, record.offset)
            self.offsets.done(tp, record.offset)
        finally:
            self._slots.release()

    def _cancel(self, request_id: str) -> None:
        task = self._running.get(request_id)
        if task is not None:
            task.cancel()
            return
        self._cancelled[request_id] = None
        if len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)

    async def _send_reply(self, request: dict[str, Any], event: str, record: dict[str, Any],
                          traceparent: str | None) -> asyncio.Future[Any]:
        """Enqueue a record for the request's reply destination; returns its delivery future."""
        partition = request["reply_partition"] if request["reply_partition"] >= 0 else None
        return await self._producer.send(
            request["reply_topic"], codec.encode(event, record), key=request["request_id"].encode(),
            partition=partition, headers=codec.headers(event, traceparent),
        )

    async def _emit(self, request: dict[str, Any], outcome: Outcome, traceparent: str | None,
                    chunks: list[asyncio.Future[Any]]) -> None:
        topics = self.settings.topics
        key = request["request_id"].encode()
        deliveries = [*chunks, await self._send_reply(request, outcome.reply_event, outcome.reply, traceparent)]
        # Attempts and usage are not on the caller's path: their producer batches them (linger 5 ms).
        for attempt in outcome.attempts:
            deliveries.append(await self._audit.send(
                topics.attempts, codec.encode("AttemptFinished", attempt), key=key,
                headers=codec.headers("AttemptFinished", traceparent),
            ))
        if outcome.usage is not None:
            deliveries.append(await self._audit.send(
                topics.usage, codec.encode("UsageRecorded", outcome.usage), key=request["project"].encode(),
                headers=codec.headers("UsageRecorded", traceparent),
            ))
        await asyncio.gather(*deliveries)

    async def _commit_loop(self) -> None:
        interval = self.settings.config.router.commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.commit()

    async def commit(self) -> None:
        positions = self.offsets.committable()
        if not positions:
            return
        try:
            await self._consumer.commit(positions)
            self.offsets.mark_committed(positions)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("offset commit failed (%s); records will be redelivered", exc)


async def serve(settings: Settings, instance_id: str | None = None) -> None:
    worker = RouterWorker(settings, instance_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    await worker.run()
