"""The router worker: for each request event, call the providers and emit the reply, the attempts and the
usage; commit the request's offset only after those are on Kafka.

Delivery, exactly: every accepted request gets one answer. A handler that raises still answers
(RequestFailed with what was made); effects that cannot be produced are retried, turned into a small
RequestFailed when permanent (`processors/effects.py`), or stop the worker without committing when
Kafka stays away; on a rebalance, revoked partitions take no new work and their requests finish (up to
`router.drain_s`) and are committed before the partitions are released, so the next owner does not run
them again; a request id already running here is never started twice.

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
from opentelemetry.trace import SpanKind

from infra import heap, kafka_clients, logs, metrics, tracing
from infra.config import Settings
from infra.record_batcher import RecordBatcher
from infra.secrets import SIGNATURE_HEADER
from processors.admission import Admission
from processors.alerts import AlertSender
from processors.answered import answered_view
from processors.cache import policy as cache_policy
from processors.cache.client import CACHE_HEADER, CacheClient, fill
from processors.chunks import ChunkCoalescer
from processors.effects import Effects, EffectsLost
from processors.gatekeeper import RATELIMIT_HEADER, Gatekeeper
from processors.handler import OPERATIONS, ChunkSink, Outcome, RequestHandler, now_ms
from processors.health import health_view
from processors.identity import Identities
from processors.offsets import OffsetTracker
from processors.route_changes import FollowedRoutes
from processors.routing import ROUTE_HEADER, Target, route_table
from processors.upstream import Upstreams
from schemas import codec

log = logging.getLogger("gateway.router")
Record = ConsumerRecord[bytes, bytes]
# Attempts, usage and cache fills are not on the caller's path: held up to 50 ms they leave in one produce
# request for a few dozen requests at one connection instead of one for every two (the router's CPU per
# request 1.43 -> 1.16 ms there, bench/results/audit-linger-20261130-s3.md); the views trail them by 100 ms.
# They are gathered into batches by `RecordBatcher` (a record appended, not sent: 121-133 -> 75-83 µs a request).
AUDIT_LINGER_MS = 50
# The poll is awaited in the consuming task itself, not raced against the stop event in a task of its own: a
# request's task is then created before aiokafka's fetcher writes its next fetch request, so that write and a
# turn of the loop no longer come between a fetched request and its task (at one connection, a fetch answered
# to the request's task 309-368 -> 109-118 µs p50, bench/results/poll-20261201.md). A stop waits for the poll
# under way: at most this long.
POLL_MS = 100


class _DrainOnRevoke(ConsumerRebalanceListener):
    def __init__(self, worker: RouterWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.release(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.revoked.difference_update(assigned)
        log.info("router assigned %s", sorted(tp.partition for tp in assigned))


class RouterWorker:
    def __init__(self, settings: Settings, instance_id: str | None = None) -> None:
        self.settings = settings
        router = settings.config.router
        self.offsets = OffsetTracker()
        self.revoked: set[TopicPartition] = set()
        self.fatal: BaseException | None = None
        self._instance_id = instance_id
        self._admission: Admission[TopicPartition, Record] = Admission(
            router.max_in_flight_per_partition, router.max_in_flight, router.max_in_flight_per_partition)
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._chunks: dict[str, list[asyncio.Future[Any]]] = {}
        self._abandoned: set[asyncio.Task[None]] = set()
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # cancels that came before their request
        self._answered: OrderedDict[str, None] = OrderedDict()  # recent answers: a record written twice runs once
        self._emitting: set[str] = set()  # answered, its effects on their way to Kafka (slow while a leader moves)
        self._stopping = False
        self._upstreams = Upstreams(settings.config.providers)
        self._cache = CacheClient(settings.config.cache)
        routes = self._routes = route_table(settings)
        self._health = health_view(settings)
        self._followed_routes = FollowedRoutes(settings, routes)  # the routes file and the admin API's
        self._handler = RequestHandler(settings, routes, self._upstreams, self._health.state, self._announce)
        kafka = settings.config.kafka
        self._producer = kafka_clients.producer(settings.bootstrap_servers, kafka=kafka, request_path=True)
        self._audit = kafka_clients.producer(settings.bootstrap_servers, linger_ms=AUDIT_LINGER_MS, kafka=kafka)
        self._effects = Effects(settings, self._producer, RecordBatcher(self._audit, AUDIT_LINGER_MS / 1000))
        self._identities = Identities(settings)
        self._answered_elsewhere = answered_view(settings)
        self._consumer = kafka_clients.consumer(
            settings.bootstrap_servers, kafka,
            group_id=settings.router_group,
            group_instance_id=instance_id,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=int(router.drain_s * 1000) + 10000,
        )

    async def run(self) -> None:
        await self._producer.start()
        await self._audit.start()
        await self._consumer.start()
        await self._answered_elsewhere.start()  # before the first request: a redelivered one is recognised
        await self._health.start()  # and the targets' recent health is known
        await self._followed_routes.start()  # and the routes set through the admin API
        await kafka_clients.subscribe(self._consumer, [self.settings.topics.requests], _DrainOnRevoke(self))
        committer = asyncio.create_task(self._commit_loop())
        log.info("router consuming %s as %s", self.settings.topics.requests, self._instance_id or "dynamic member")
        heap.serving()
        try:
            await self._consume()
        finally:
            running = [t for tasks in self._tasks.values() for t in tasks]
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            committer.cancel()
            await self.commit()
            await self._consumer.stop()
            await self._answered_elsewhere.stop()
            await self._health.stop()
            await self._followed_routes.stop()
            await self._producer.stop()
            await self._audit.stop()
            await self._upstreams.aclose()
            await self._cache.aclose()

    def stop(self) -> None:
        self._stopping = True

    async def _consume(self) -> None:
        while not self._stopping:
            try:
                batch = await self._consumer.getmany(timeout_ms=POLL_MS)
            except KafkaError as error:
                log.warning("fetching requests failed (%r); fetching again", error)  # the group rejoins
                continue
            if self._stopping:
                break  # what this poll brought is not started: not committed, the partition's next owner runs it
            for tp, records in batch.items():
                for record in records:
                    self._admit(tp, record)
            self._apply_pauses()

    def _admit(self, tp: TopicPartition, record: Record) -> None:
        """A fetched record: a cancel is applied at once (it never waits for a slot); a request starts
        now or waits in its partition's backlog."""
        if tp in self.revoked:
            return
        self.offsets.started(tp, record.offset)
        if codec.header(record.headers, codec.EVENT_HEADER) == "RequestCancelled":
            with contextlib.suppress(codec.UnknownEvent, ValueError, EOFError, KeyError):
                self._cancel(codec.decode(record.headers, record.value or b"")[1]["request_id"])
            self.offsets.done(tp, record.offset)
            return
        if self._admission.offer(tp, record):
            self._start(tp, record)

    def _start(self, tp: TopicPartition, record: Record) -> None:
        metrics.IN_FLIGHT.inc()
        task = asyncio.create_task(self._process(tp, record))
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _finished(self, tp: TopicPartition) -> None:
        metrics.IN_FLIGHT.dec()
        for next_tp, record in self._admission.finished(tp):
            self._start(next_tp, record)
        self._apply_pauses()

    def _apply_pauses(self) -> None:
        assigned = self._consumer.assignment()
        if paused := [tp for tp in self._admission.to_pause() if tp in assigned]:
            self._consumer.pause(*paused)
        if resumed := [tp for tp in self._admission.to_resume() if tp in assigned]:
            self._consumer.resume(*resumed)

    async def _process(self, tp: TopicPartition, record: Record) -> None:
        try:
            await self._answer(tp, record)
        except EffectsLost as exc:
            log.critical("Kafka is unreachable for the effects of %s@%d (%s); stopping without committing it "
                         "so that it is redelivered", tp, record.offset, exc)
            self.fatal = exc
            self.stop()
        finally:
            self._finished(tp)

    async def _answer(self, tp: TopicPartition, record: Record) -> None:
        try:
            event, request = codec.decode(record.headers, record.value or b"")
        except (codec.UnknownEvent, ValueError, EOFError) as exc:
            log.error("skipping undecodable record %s@%d: %s", tp, record.offset, exc)
            self.offsets.done(tp, record.offset)
            return
        if event not in OPERATIONS:
            log.error("skipping %s at %s@%d: not a request", event, tp, record.offset)
            self.offsets.done(tp, record.offset)
            return
        request_id = request["request_id"]
        logs.REQUEST_ID.set(request_id)  # this task's log lines carry it
        why = self._identities.refusal(request, codec.header(record.headers, SIGNATURE_HEADER))
        if why is not None:
            await self._effects.refuse(request, self._handler.refused(request, why), why)
            self.offsets.done(tp, record.offset)
            return
        if request_id in self._running or request_id in self._emitting or request_id in self._answered \
                or request_id in self._answered_elsewhere.state:
            log.warning("request %s at %s@%d is already running or answered; not running it twice",
                        request_id, tp, record.offset)
            self.offsets.done(tp, record.offset)
            return
        traceparent = codec.header(record.headers, codec.TRACEPARENT_HEADER)
        task = asyncio.current_task()
        assert task is not None
        self._running[request_id] = task  # type: ignore[assignment]
        try:
            self._effects.carry(request_id, [(k, v) for k, v in record.headers or () if k == RATELIMIT_HEADER])
            outcome = await self._outcome(event, request, traceparent)
        finally:
            if self._running.get(request_id) is task:
                del self._running[request_id]
        if task in self._abandoned:  # revoked past the drain time: the partition's next owner answers it
            self._abandoned.discard(task)  # type: ignore[arg-type]
            return
        self._emitting.add(request_id)  # no await since it left _running: a copy fetched meanwhile is not run
        try:
            await self._effects.emit(request, outcome, traceparent, self._chunks.pop(request_id, []))
        finally:
            self._effects.forget(request_id)
            self._emitting.discard(request_id)
        self.offsets.done(tp, record.offset)
        for attempt in outcome.attempts:
            metrics.record_attempt(attempt)
        if outcome.usage is not None:
            metrics.record_usage(outcome.usage)
        self._answered[request_id] = None
        if len(self._answered) > 100_000:
            self._answered.popitem(last=False)

    async def _outcome(self, event: str, request: dict[str, Any], traceparent: str | None) -> Outcome:
        request_id = request["request_id"]
        chunks = ChunkCoalescer(lambda chunk: self._effects.chunk(request, chunk, traceparent),
                                kafka_clients.let_sender_write)
        self._chunks[request_id] = chunks.sent
        try:
            return await self._outcome_of(event, request, traceparent, chunks.add)
        finally:
            await chunks.flush()  # before the reply: whatever the stream holds leaves first

    async def _outcome_of(self, event: str, request: dict[str, Any], traceparent: str | None, send_chunk: ChunkSink
                          ) -> Outcome:
        request_id = request["request_id"]
        cancelled_before = request_id in self._cancelled
        if cancelled_before or request["deadline_ms"] <= now_ms():
            self._cancelled.pop(request_id, None)
            return self._handler.expired(request)
        outcome = Outcome()
        try:
            with tracing.span("router.handle", SpanKind.CONSUMER, traceparent,
                              {"gateway.request_id": request_id, "gateway.model": request["model"]}):
                return await self._handle(event, request, outcome, send_chunk)
        except asyncio.CancelledError:  # cancelled between provider calls: nothing more to record
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return self._handler.expired(request)
        except Exception as exc:
            log.exception("request %s raised while being handled; answering with an internal error", request_id)
            return self._handler.crashed(request, outcome, exc)

    async def _handle(self, event: str, request: dict[str, Any], outcome: Outcome, send_chunk: ChunkSink
                      ) -> Outcome:
        """The cache first, when the request or its model asks for it; else (and to fill it) the providers."""
        plan = cache_policy.plan(request, self.settings.config.cache) if event == "RequestReceived" else None
        if plan is None:
            return await self._handler.handle(event, request, outcome, send_chunk)
        looked = await self._cache.lookup(plan)
        self._effects.carry(request["request_id"], [(CACHE_HEADER, looked.header())])
        if looked.entry is not None:
            outcome = await self._handler.from_cache(request, looked.entry, send_chunk)
        else:
            outcome = await self._handler.handle(event, request, outcome, send_chunk)
            if outcome.reply_event == "ResponseCompleted":
                outcome.fill = fill(request, plan, looked, outcome.reply, now_ms())
        if outcome.usage is not None:
            outcome.usage.update(cache=looked.status, cache_similarity=looked.similarity)
        return outcome

    def _announce(self, request_id: str, target: Target) -> None:
        """The route that chose a target travels with the replies, to the x-gateway-route headers."""
        if target.route is not None:
            self._effects.carry(request_id, [(ROUTE_HEADER, f"{target.route};{target.strategy}".encode())])

    def _cancel(self, request_id: str) -> None:
        task = self._running.get(request_id)
        if task is not None:
            task.cancel()
            return
        self._cancelled[request_id] = None
        if len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Partitions are being taken away: no new work from them; their requests finish (up to
        `router.drain_s`), are committed, and only then are the partitions given up. What is still
        running after that is abandoned (cancelled, nothing emitted): the next owner runs it."""
        self.revoked.update(revoked)
        for tp in revoked:
            self._admission.drop(tp)
        draining = [t for tp in revoked for t in self._tasks.get(tp, ())]
        if draining:
            log.info("draining %d request(s) of revoked partitions %s", len(draining),
                     sorted(tp.partition for tp in revoked))
            _, late = await asyncio.wait(draining, timeout=self.settings.config.router.drain_s)
            for task in late:
                self._abandoned.add(task)
                for request_id, running in list(self._running.items()):
                    if running is task:
                        del self._running[request_id]
                task.cancel()
            if late:
                log.warning("%d request(s) still running after drain_s; abandoned to the next owner", len(late))
        await self.commit()
        self.offsets.forget(revoked)

    async def _commit_loop(self) -> None:
        interval = self.settings.config.router.commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self.commit()
            self._measure_lag()

    def _measure_lag(self) -> None:
        group = self.settings.router_group
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            committed = self.offsets.committed(tp)
            if end is not None and committed is not None:
                metrics.LAG.labels(group, tp.topic, str(tp.partition)).set(max(end - committed, 0))

    async def commit(self) -> None:
        positions = self.offsets.committable()
        if not positions:
            return
        try:
            await self._consumer.commit(positions)
            self.offsets.mark_committed(positions)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("offset commit failed (%s); records will be redelivered", exc)


async def serve(settings: Settings, instance_id: str | None = None, metrics_port: int | None = None) -> None:
    if metrics_port:
        metrics.serve(metrics_port)
    worker = RouterWorker(settings, instance_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    stopping = asyncio.Event()
    helpers = []
    helpers.append(asyncio.create_task(Gatekeeper(settings).run(stopping)))  # limits may come by the admin API
    if settings.config.alerts.webhooks:
        helpers.append(asyncio.create_task(AlertSender(settings).run(stopping)))
    try:
        await worker.run()
    finally:
        stopping.set()
        await asyncio.gather(*helpers, return_exceptions=True)
    if worker.fatal is not None:
        raise SystemExit(f"gateway router: stopped, Kafka unreachable for effects ({worker.fatal})")
