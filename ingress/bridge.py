"""The ingress side of Kafka: produce RequestReceived, and wait for its answer on the reply partition
this instance owns (direct assignment, no consumer group, so no rebalance on the hot path)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra import kafka_clients
from infra.config import Settings
from infra.secrets import SIGNATURE_HEADER, RequestSigner
from ingress.reply_lease import ReplyLease
from processors.limits import Policies
from processors.policies import policies_view
from schemas import codec

log = logging.getLogger("gateway.ingress")

Reply = tuple[str, dict[str, Any]]
Waiter = asyncio.Future[Reply] | asyncio.Queue[Reply]


class KafkaBridge:
    def __init__(self, settings: Settings, reply_partition: int | None, instance_id: str | None = None) -> None:
        """`reply_partition` None: claim one (`ingress/reply_lease.py`) under `instance_id` (default: a new
        id, so a restart waits for its old lease to expire instead of taking it back)."""
        self.settings = settings
        self.reply_topic = settings.topics.replies
        self.reply_partition = reply_partition if reply_partition is not None else -1
        self._signer = RequestSigner(settings.signing_secret, settings.previous_secrets)
        self.policies = Policies(settings.config.limits, settings.config.budgets)
        self.policy_view = policies_view(settings, self.policies)
        self._lease = ReplyLease(settings, instance_id or f"ingress-{uuid.uuid4().hex[:12]}") \
            if reply_partition is None else None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[str, Waiter] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self.unknown_replies = 0
        self.undecodable_replies = 0
        self.ready = False
        self._last_poll = 0.0

    async def start(self) -> None:
        """Connect (inside the event loop, as aiokafka requires) and take the reply partition."""
        await self.policy_view.start()
        if self._lease is not None:
            self.reply_partition = await self._lease.acquire()
            self._lease.on_lost = self._lease_lost
        kafka = self.settings.config.kafka
        self._producer = kafka_clients.producer(self.settings.bootstrap_servers, kafka=kafka, request_path=True)
        self._consumer = kafka_clients.consumer(self.settings.bootstrap_servers, kafka)
        await self._producer.start()
        await self._consumer.start()
        tp = TopicPartition(self.reply_topic, self.reply_partition)
        self._consumer.assign([tp])
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_replies())
        self._reader.add_done_callback(self._reader_ended)
        self.ready = True

    async def _produce(self, event: str, request: dict[str, Any], traceparent: str | None) -> None:
        """Onto `requests` keyed by request id; a project under a limit or budget goes through the
        gatekeeper first (`admission`, keyed by project). Awaited: once this returns, the request is on Kafka."""
        assert self._producer is not None
        projects = self.policies.projects()
        governed = projects is None or request["project"] in projects
        topic, key = (self.settings.topics.admission, request["project"]) if governed \
            else (self.settings.topics.requests, request["request_id"])
        await self._producer.send_and_wait(topic, codec.encode(event, request), key=key.encode(),
                                           headers=self._headers(event, request, traceparent))

    async def record(self, topic: str, key: str, event: str, record: dict[str, Any]) -> None:
        """Produce one control event (a cache purge) and wait until Kafka holds it."""
        assert self._producer is not None
        await self._producer.send_and_wait(topic, codec.encode(event, record), key=key.encode(),
                                           headers=codec.headers(event))

    def _headers(self, event: str, request: dict[str, Any], traceparent: str | None) -> codec.Headers:
        """The event's headers and the ingress's signature: the router knows it came through HTTP."""
        return [*codec.headers(event, traceparent), (SIGNATURE_HEADER, self._signer.sign(request).encode())]

    def _lease_lost(self) -> None:
        """Another instance holds our reply partition (we stalled past the lease): stop taking requests and
        shut down gracefully; what is in flight is still read until then."""
        self.ready = False
        os.kill(os.getpid(), signal.SIGTERM)

    async def stop(self) -> None:
        self.ready = False
        await self.policy_view.stop()
        if self._lease is not None:
            await self._lease.release()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    @property
    def reading(self) -> bool:
        """The reply reader is alive and polled Kafka within the last few seconds."""
        return self._reader is not None and not self._reader.done() and time.monotonic() - self._last_poll < 5

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def submit(self, event: str, request: dict[str, Any], traceparent: str | None,
                     timeout_s: float) -> Reply | None:
        """Produce the request (awaited: once this returns, the request is on Kafka) and wait for its
        answer until `timeout_s`; None when the deadline passes first."""
        request_id = request["request_id"]
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        assert self._producer is not None, "submit() before start()"
        try:
            await self._produce(event, request, traceparent)
            async with asyncio.timeout(timeout_s):  # not wait_for: the reply resumes this task directly
                return await waiter
        except TimeoutError:
            return None
        finally:
            self._pending.pop(request_id, None)

    async def open_stream(self, event: str, request: dict[str, Any], traceparent: str | None) -> asyncio.Queue[Reply]:
        """Produce a streaming request (awaited) and return the queue its chunks and its end arrive on;
        `close_stream` must follow."""
        assert self._producer is not None, "open_stream() before start()"
        queue: asyncio.Queue[Reply] = asyncio.Queue()
        self._pending[request["request_id"]] = queue
        try:
            await self._produce(event, request, traceparent)
        except BaseException:
            self._pending.pop(request["request_id"], None)
            raise
        return queue

    def close_stream(self, request: dict[str, Any], finished: bool) -> None:
        """Forget a stream; when the caller left before its end, tell the router to stop (RequestCancelled)."""
        self._pending.pop(request["request_id"], None)
        if not finished:
            task = asyncio.get_running_loop().create_task(self._cancel(request))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _cancel(self, request: dict[str, Any]) -> None:
        assert self._producer is not None
        record = {"request_id": request["request_id"], "project": request["project"],
                  "cancelled_at_ms": time.time_ns() // 1_000_000}
        await self._producer.send(self.settings.topics.requests, codec.encode("RequestCancelled", record),
                                  key=request["request_id"].encode(), headers=codec.headers("RequestCancelled"))

    async def _read_replies(self) -> None:
        """Deliver every reply to its waiter. Nothing a record holds can stop this loop: what cannot be
        decoded is dropped and counted, and a Kafka error is logged and the poll tried again."""
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                log.error("reading replies failed (%s); polling again", exc)
                await asyncio.sleep(0.5)
                continue
            self._last_poll = time.monotonic()
            for records in batch.values():
                for record in records:
                    self._deliver(record.headers, record.value or b"")

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        """The reader stopped by a bug: log it and start it again, so this instance keeps answering."""
        if task.cancelled() or not self.ready:
            return
        log.error("the reply reader died (%r); restarting it", task.exception())
        self._reader = asyncio.get_running_loop().create_task(self._read_replies())
        self._reader.add_done_callback(self._reader_ended)

    def _deliver(self, headers: Any, payload: bytes) -> None:
        try:
            name, reply = codec.decode(headers, payload)
            request_id = reply["request_id"]
            if (quota := codec.header(headers, "gateway-ratelimit")) is not None:
                reply["ratelimit"] = orjson.loads(quota)  # the gatekeeper's counters, for x-ratelimit-* headers
            if (route := codec.header(headers, "gateway-route")) is not None:
                reply["route"] = route  # "<route>;<strategy>": which route chose the target
            if (cache := codec.header(headers, "gateway-cache")) is not None:
                reply["cache"] = cache  # the router's word on the cache, for x-gateway-cache
        except Exception as exc:  # a record from a broken or hostile producer: never fatal to the reader
            self.undecodable_replies += 1
            log.warning("dropping undecodable reply: %r", exc)
            return
        waiter = self._pending.get(request_id)
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait((name, reply))
        elif waiter is None or waiter.done():
            self.unknown_replies += 1  # a late answer, or a duplicate after a router restart
        else:
            waiter.set_result((name, reply))
