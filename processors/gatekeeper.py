"""The gatekeeper: the admission stage for projects under a rate limit or a cost budget. It consumes the
`admission` topic (keyed by project, consumer group `<prefix>gatekeeper`), decides with `limits.py`, and
either forwards the request to `requests` (keyed by request id: the routers spread it as any other) or
answers 429 and records a `RequestRejected`. It follows the partitions of `usage` with the same numbers
(co-partitioned by project) to settle costs and tokens, and restores its state from them at start;
thresholds crossed go to the compacted `budget-alerts` topic, which it also reads at start, so each is
announced once per period across restarts. Runs inside every router process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from infra import kafka_clients
from infra.config import Settings
from infra.log_view import Change, LogView
from processors.catalog import expected_cost_usd
from processors.limits import Policies, Refusal, history_start_ms
from processors.offsets import OffsetTracker
from processors.policies import policies_view
from processors.route_changes import FollowedRoutes
from processors.routing import route_table
from schemas import codec

log = logging.getLogger("gateway.gatekeeper")
RATELIMIT_HEADER = "gateway-ratelimit"  # travels with the request and its reply, to the x-ratelimit-* headers


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def fold_alerts(sent: set[str], change: Change) -> None:
    sent.add(change.key.decode())


class _RestoreOnAssignment(ConsumerRebalanceListener):
    def __init__(self, keeper: Gatekeeper) -> None:
        self._keeper = keeper

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._keeper.release(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Restored by the admission loop before it handles a record: aiokafka already fetches the new
        # partitions while this listener runs.
        self._keeper.restoring = {tp.partition for tp in assigned}


class Gatekeeper:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.config
        self.policies = Policies(config.limits, config.budgets)
        self._policies = policies_view(settings, self.policies)  # and those set through the admin API
        self._routes = route_table(settings)
        self._followed_routes = FollowedRoutes(settings, self._routes)  # to estimate a route's cost
        self._consumer = kafka_clients.consumer(settings.bootstrap_servers, config.kafka,
                                                group_id=settings.env.gateway_topic_prefix + "gatekeeper",
                                                auto_offset_reset="earliest")
        # Usage settles up to 100 ms late (a request is reserved until then): a fetch every 100 ms, not per request.
        self._usage = kafka_clients.consumer(settings.bootstrap_servers, config.kafka, lag_ms=kafka_clients.TRAILING_MS)
        self._producer = kafka_clients.producer(settings.bootstrap_servers, kafka=config.kafka, request_path=True)
        self._alerts: LogView[set[str]] = LogView(settings.bootstrap_servers, settings.topics.budget_alerts,
                                                  fold_alerts, set(), config.kafka)
        self._settler: asyncio.Task[None] | None = None
        self.restoring: set[int] | None = None  # partitions assigned and not restored yet
        self._usage_lock = asyncio.Lock()
        self._offsets = OffsetTracker()  # one reader of the usage consumer at a time (restore, settle)

    async def run(self, stopping: asyncio.Event) -> None:
        await self._producer.start()
        await self._policies.start()
        await self._followed_routes.start()
        await self._alerts.start()
        await self._usage.start()
        await self._consumer.start()
        await kafka_clients.subscribe(self._consumer, [self.settings.topics.admission], _RestoreOnAssignment(self))
        self._settler = asyncio.create_task(self._settle_loop())
        committer = asyncio.create_task(self._commit_loop())
        try:
            while not stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=200)
                if self.restoring is not None:
                    partitions, self.restoring = self.restoring, None
                    await self.follow_usage(partitions)
                for tp, records in batch.items():
                    for record in records:
                        self._offsets.started(tp, record.offset)
                        sent = await self._admit(record.headers, record.value or b"")
                        self._done_when(sent, tp, record.offset)
        finally:
            committer.cancel()
            await self._producer.flush()
            await self._commit()
            self._settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settler
            for client in (self._consumer, self._usage, self._producer):
                await client.stop()
            await self._alerts.stop()
            await self._policies.stop()
            await self._followed_routes.stop()

    def _done_when(self, sent: list[asyncio.Future[Any]], tp: TopicPartition, offset: int) -> None:
        """An admission record is done once what it produced is on Kafka (committed by `_commit_loop`, not
        awaited here: the next request does not wait for this one's acknowledgement)."""
        pending = [f for f in sent if not f.done()]
        if not pending:
            self._offsets.done(tp, offset)
            return
        gathered = asyncio.gather(*pending)
        gathered.add_done_callback(lambda f: None if f.exception() else self._offsets.done(tp, offset))

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Partitions leave: what was forwarded is committed first, so the next owner does not forward it again."""
        await self._producer.flush()
        await self._commit()
        self._offsets.forget(revoked)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            await self._commit()

    async def _commit(self) -> None:
        positions = self._offsets.committable()
        if positions:
            with contextlib.suppress(KafkaError):
                await self._consumer.commit(positions)
                self._offsets.mark_committed(positions)

    async def follow_usage(self, partitions: set[int]) -> None:
        """Own these projects (every assignment is the whole of it): rebuild their rate-limit buckets from
        the admissions decided in the last window and their spend from the usage of the current periods,
        then follow the usage."""
        self.policies.forget()
        async with self._usage_lock:
            await self._replay_admissions(partitions)
            # Budgets set later through the admin API count from their first request on.
            since = min((history_start_ms(b, _now_ms()) for b in self.policies.budgets.values()),
                        default=_now_ms() - 60_000)
            tps = [TopicPartition(self.settings.topics.usage, p) for p in sorted(partitions)]
            self._usage.assign(tps)
            ends = await self._seek(tps, since)
            # Restoring: settle what is already there before admitting anything new.
            while [tp for tp in tps if await self._usage.position(tp) < ends[tp]]:
                await self._settle_batch(await self._usage.getmany(timeout_ms=200))

    async def _seek(self, tps: list[TopicPartition], since_ms: int) -> dict[TopicPartition, int]:
        """Position the reader at the first record at or after `since_ms`; returns the ends."""
        if not tps:
            return {}
        found = await self._usage.offsets_for_times({tp: since_ms for tp in tps})
        ends = await self._usage.end_offsets(tps)
        for tp in tps:
            self._usage.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
        return ends

    async def _replay_admissions(self, partitions: set[int]) -> None:
        """Decide again, taking from the buckets but producing nothing, what was admitted before this owner:
        the records of the last refill window up to the group's committed position."""
        tps = [TopicPartition(self.settings.topics.admission, p) for p in sorted(partitions)]
        committed = {tp: await self._consumer.committed(tp) or 0 for tp in tps}
        self._usage.assign(tps)
        await self._seek(tps, _now_ms() - int(self.policies.refill_window_s() * 1000))
        replayed = 0
        while behind := [tp for tp in tps if await self._usage.position(tp) < committed[tp]]:
            batch = await self._usage.getmany(*behind, timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= committed[tp]:
                        continue
                    with contextlib.suppress(codec.UnknownEvent, ValueError, EOFError):
                        _, request = codec.decode(record.headers, record.value or b"")
                        self.policies.admit(request, self._expected_cost(request), record.timestamp / 1000,
                                            record.timestamp)
                        replayed += 1
        log.info("gatekeeper replayed %d admissions of partitions %s (committed %s)", replayed, sorted(partitions),
                 {tp.partition: offset for tp, offset in committed.items()})

    async def _settle_loop(self) -> None:
        while True:
            if not self._usage.assignment():
                await asyncio.sleep(0.1)
                continue
            try:
                async with self._usage_lock:
                    batch = await self._usage.getmany(timeout_ms=200)
                await self._settle_batch(batch)
            except Exception:  # a bad record or a Kafka hiccup must not stop settling
                log.exception("settling usage failed; reading on")

    async def _settle_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        named = self.policies.projects()  # None: a policy applies to every project
        for records in batch.values():
            for record in records:
                if named is not None and (record.key or b"").decode(errors="replace") not in named:
                    continue  # usage is keyed by project: one no policy names settles nothing, so is not decoded
                try:
                    _, usage = codec.decode(record.headers, record.value or b"")
                except (codec.UnknownEvent, ValueError, EOFError):
                    continue
                for budget, period, threshold, spent in self.policies.settle(usage, time.time()):
                    key = f"{budget.name}:{usage['project']}:{period}:{threshold}"
                    # A rolling crossing older than a window was seen without its full history while
                    # restoring (and was announced when it happened).
                    stale = budget.period == "rolling" and usage["recorded_at_ms"] < _now_ms() - budget.window_ms
                    if key not in self._alerts.state and not stale:
                        await self._alerts.publish(key.encode(), "BudgetThresholdCrossed", {
                            "budget": budget.name, "project": usage["project"], "period": period,
                            "threshold": threshold, "spent_usd": spent, "limit_usd": budget.usd,
                            "crossed_at_ms": _now_ms()})
                        log.warning("budget %s of project %s crossed %.0f%% in %s (%.6f of %s USD)", budget.name,
                                    usage["project"], threshold * 100, period, spent, budget.usd)

    def _expected_cost(self, request: dict[str, Any]) -> float:
        target = self._routes.target(request["model"])
        return 0.0 if target is None or target.info is None else expected_cost_usd(target.info, request)

    async def _admit(self, headers: Any, payload: bytes) -> list[asyncio.Future[Any]]:
        """Forward or refuse one request; returns the deliveries of what it produced."""
        try:
            _, request = codec.decode(headers, payload)
        except (codec.UnknownEvent, ValueError, EOFError) as exc:
            log.error("skipping an undecodable admission record: %r", exc)
            return []
        now = time.time()
        refusal = self.policies.admit(request, self._expected_cost(request), now, _now_ms())
        quota = self.policies.quota(request, now)
        extra = [(RATELIMIT_HEADER, orjson.dumps(quota))] if quota else []
        if refusal is None:
            return [await self._producer.send(self.settings.topics.requests, payload,
                                              key=request["request_id"].encode(),
                                              headers=[*(headers or ()), *extra])]
        return await self._refuse(request, refusal, extra)

    async def _refuse(self, request: dict[str, Any], refusal: Refusal, extra: list[tuple[str, bytes]]
                      ) -> list[asyncio.Future[Any]]:
        now = _now_ms()
        reply = {"request_id": request["request_id"], "project": request["project"], "status": refusal.status,
                 "error_type": "rate_limit_error", "code": refusal.code, "message": refusal.message, "attempts": 0,
                 "failed_at_ms": now, "retry_after_s": refusal.retry_after_s}
        partition = request["reply_partition"] if request["reply_partition"] >= 0 else None
        answered = await self._producer.send(request["reply_topic"], codec.encode("RequestFailed", reply),
                                             key=request["request_id"].encode(), partition=partition,
                                             headers=[*codec.headers("RequestFailed"), *extra])
        recorded = await self._producer.send(self.settings.topics.rejections, codec.encode("RequestRejected", {
            "request_id": request["request_id"], "project": request["project"], "key_id": request["key_id"],
            "user": request.get("user"), "model": request["model"], "code": refusal.code,
            "message": refusal.message, "retry_after_s": refusal.retry_after_s, "rejected_at_ms": now}),
            key=request["project"].encode(), headers=codec.headers("RequestRejected"))
        return [answered, recorded]
