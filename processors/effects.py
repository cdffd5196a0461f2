"""The effects of one request on Kafka: its chunks and reply (to the caller's reply topic), its attempts and
its usage (the audit trail), produced so that the caller always gets an answer:

- a transient Kafka error (leader moved, broker restarting, timeout) is retried with backoff (0.2 s
  doubling to 2 s) for up to `router.effects_retry_s`; past that, `EffectsLost` tells the worker to stop
  without committing, so the request is redelivered to a worker that can reach Kafka;
- a permanent error on the reply (larger than `kafka.max_message_bytes`, a reply topic that does not
  exist or may not be written) becomes a small RequestFailed saying why; what cannot reach its reply
  topic at all goes to the `undeliverable` topic, with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from infra.config import Settings
from infra.record_batcher import RecordBatcher
from processors.answered import REQUEST_ID_HEADER
from processors.handler import Outcome, now_ms
from schemas import codec

log = logging.getLogger("gateway.router")

TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)
NO_DESTINATION = (UnknownTopicOrPartitionError, TopicAuthorizationFailedError, InvalidTopicError)


class EffectsLost(Exception):
    """Kafka stayed unreachable for a request's effects: the worker must stop without committing it."""


class Effects:
    def __init__(self, settings: Settings, replies: AIOKafkaProducer, audit: RecordBatcher) -> None:
        self._settings = settings
        self._replies = replies
        self._audit = audit
        self._known_topics: set[str] = {settings.topics.replies}
        self._budget_s = settings.config.router.effects_retry_s
        self._carried: dict[str, dict[str, bytes]] = {}
        self._resending: set[asyncio.Task[None]] = set()  # chunks sent again after a transient error

    def carry(self, request_id: str, headers: codec.Headers) -> None:
        """Headers its replies carry back to the ingress (the gatekeeper's rate-limit state, the cache's word,
        the route that chose the target); a later value of one replaces the earlier."""
        if headers:
            self._carried.setdefault(request_id, {}).update(headers)

    def forget(self, request_id: str) -> None:
        self._carried.pop(request_id, None)

    async def chunk(self, request: dict[str, Any], chunk: dict[str, Any], traceparent: str | None
                    ) -> asyncio.Future[Any]:
        """Enqueue one streamed chunk; the future returned is done once Kafka holds it. A transient error (the
        partition's leader lost) sends it again with the reply's backoff and budget; the stream's next chunk
        waits for it (one is in flight per stream, `processors/chunks.py`), so the order holds. What still
        fails (too large, the budget spent) ends the stream with an error when the reply is produced."""
        def send() -> Awaitable[asyncio.Future[Any]]:
            return self._send_reply(request, "ResponseChunk", chunk, traceparent)

        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[Any] = loop.create_future()
        try:
            sent = await send()
        except KafkaError as exc:  # not even enqueued: settled below like a failed delivery
            sent = loop.create_future()
            sent.set_exception(exc)
        sent.add_done_callback(lambda done: self._chunk_sent(done, send, delivered))
        return delivered

    def _chunk_sent(self, sent: asyncio.Future[Any], send: Callable[[], Awaitable[asyncio.Future[Any]]],
                    delivered: asyncio.Future[Any]) -> None:
        if sent.cancelled():
            delivered.cancel()
        elif (error := sent.exception()) is None:
            delivered.set_result(sent.result())
        elif isinstance(error, KafkaError) and not isinstance(error, TOO_LARGE):
            self._resend(send, delivered)
        else:
            delivered.set_exception(error)

    def _resend(self, send: Callable[[], Awaitable[asyncio.Future[Any]]], delivered: asyncio.Future[Any]) -> None:
        async def again() -> None:
            try:
                await _with_retry(send, self._budget_s)
                delivered.set_result(None)
            except Exception as exc:
                delivered.set_exception(exc)

        task = asyncio.get_running_loop().create_task(again())
        self._resending.add(task)
        task.add_done_callback(self._resending.discard)

    async def emit(self, request: dict[str, Any], outcome: Outcome, traceparent: str | None,
                   chunks: list[asyncio.Future[Any]]) -> None:
        """Produce the reply, then the attempts and usage; returns once Kafka holds them all."""
        if not await self._destination_exists(request["reply_topic"]):
            await self._undeliverable(request, outcome, traceparent, f"reply topic {request['reply_topic']!r} "
                                      "does not exist")
        else:
            await self._reply(request, outcome, traceparent, chunks)
        await self._audits(request, outcome, traceparent)

    async def refuse(self, request: dict[str, Any], outcome: Outcome, why: str) -> None:
        """A request that may not be answered where it asks (a spoofed identity): the refusal goes to the
        undeliverable topic, never to the reply topic it named."""
        log.warning("refused request %s (project %s, key %s, reply topic %r): %s", request["request_id"],
                    request["project"], request["key_id"], request["reply_topic"], why)
        await _with_retry(_sender(self._audit, self._settings.topics.undeliverable, "RequestFailed", outcome.reply,
                                  request["request_id"].encode(), None), self._budget_s)

    async def _reply(self, request: dict[str, Any], outcome: Outcome, traceparent: str | None,
                     chunks: list[asyncio.Future[Any]]) -> None:
        lost = [r for r in await asyncio.gather(*chunks, return_exceptions=True) if isinstance(r, BaseException)] \
            if chunks else []  # not a stream: no gathering (0.9 % of the router's samples at 64 connections)
        if lost and outcome.reply_event != "RequestFailed":
            log.error("request %s: %d chunk(s) could not be produced (%s); ending its stream with an error",
                      request["request_id"], len(lost), lost[0])
            _fail(outcome, 502, "stream_interrupted", "part of the stream could not be delivered; retry")
        # The gateway's own reply topic missing is a broker still starting (transient); a client's is permanent.
        permanent = TOO_LARGE if request["reply_topic"] == self._settings.topics.replies else (*TOO_LARGE,
                                                                                           *NO_DESTINATION)
        try:
            await _with_retry(lambda: self._send_reply(request, outcome.reply_event, outcome.reply, traceparent),
                              self._budget_s, permanent)
        except TOO_LARGE as exc:
            size = len(codec.encode(outcome.reply_event, outcome.reply))
            log.error("request %s: the %s (%d bytes) does not fit a Kafka record: %s", request["request_id"],
                      outcome.reply_event, size, exc)
            _fail(outcome, 502, "response_too_large",
                  f"the provider's answer ({size} bytes) is larger than this gateway's kafka.max_message_bytes "
                  f"({self._settings.config.kafka.max_message_bytes}); ask for less (fewer inputs, url instead "
                  "of b64_json) or raise the limit")
            await _with_retry(lambda: self._send_reply(request, outcome.reply_event, outcome.reply, traceparent),
                              self._budget_s, permanent)
        except NO_DESTINATION as exc:
            self._known_topics.discard(request["reply_topic"])
            await self._undeliverable(request, outcome, traceparent,
                                      f"reply topic {request['reply_topic']!r}: {type(exc).__name__}")

    async def _audits(self, request: dict[str, Any], outcome: Outcome, traceparent: str | None) -> None:
        topics = self._settings.topics
        key = request["request_id"].encode()
        # Attempts and usage are not on the caller's path: their producer batches them (`AUDIT_LINGER_MS`).
        sends: list[Callable[[], Awaitable[asyncio.Future[Any]]]] = [
            _sender(self._audit, topics.attempts, "AttemptFinished", attempt, key, traceparent)
            for attempt in outcome.attempts]
        if outcome.usage is not None:
            sends.append(_sender(self._audit, topics.usage, "UsageRecorded", outcome.usage,
                                 request["project"].encode(), traceparent, [(REQUEST_ID_HEADER, key)]))
        if outcome.fill is not None:
            sends.append(_sender(self._audit, topics.completions, "CompletionRecorded", outcome.fill,
                                 request["project"].encode(), traceparent))
        for result in await _produce_all(sends, self._budget_s):
            if isinstance(result, EffectsLost):
                raise result
            if isinstance(result, BaseException):  # an audit record too large: a bug, not a reason to stop
                log.error("request %s: an audit record could not be produced: %r", request["request_id"], result)

    async def _send_reply(self, request: dict[str, Any], event: str, record: dict[str, Any],
                          traceparent: str | None) -> asyncio.Future[Any]:
        partition = request["reply_partition"] if request["reply_partition"] >= 0 else None
        return await self._replies.send(
            request["reply_topic"], codec.encode(event, record), key=request["request_id"].encode(),
            partition=partition, headers=[*codec.headers(event, traceparent),
                                          *self._carried.get(request["request_id"], {}).items()],
        )

    async def _undeliverable(self, request: dict[str, Any], outcome: Outcome, traceparent: str | None,
                             why: str) -> None:
        log.error("request %s (project %s): its answer cannot go to %r (%s); written to %s",
                  request["request_id"], request["project"], request["reply_topic"], why,
                  self._settings.topics.undeliverable)
        if outcome.reply_event != "RequestFailed":
            _fail(outcome, 502, "undeliverable", why)
        else:
            outcome.reply["message"] = f"{outcome.reply['message']} (undeliverable: {why})"
        await _with_retry(_sender(self._audit, self._settings.topics.undeliverable, "RequestFailed", outcome.reply,
                                  request["request_id"].encode(), traceparent), self._budget_s)

    async def _destination_exists(self, topic: str) -> bool:
        """Known topics are cached; an unknown one costs one metadata request (not a 10 s produce wait)."""
        if topic in self._known_topics:
            return True
        metadata = await self._replies.client.fetch_all_metadata()
        self._known_topics.update(metadata.topics())
        return topic in self._known_topics


def _fail(outcome: Outcome, status: int, code: str, message: str) -> None:
    """Turn an outcome's reply into a small RequestFailed (its attempts and usage stay as they were)."""
    request_id, project = outcome.reply["request_id"], outcome.reply["project"]
    outcome.reply_event = "RequestFailed"
    outcome.reply = {"request_id": request_id, "project": project, "status": status, "error_type": "api_error",
                     "code": code, "message": message, "attempts": len(outcome.attempts), "failed_at_ms": now_ms()}


def _sender(producer: RecordBatcher, topic: str, event: str, record: dict[str, Any], key: bytes,
            traceparent: str | None, extra_headers: codec.Headers = ()) -> Callable[[], Awaitable[asyncio.Future[Any]]]:
    payload, headers = codec.encode(event, record), [*codec.headers(event, traceparent), *extra_headers]
    return lambda: producer.send(topic, payload, key=key, headers=headers)


async def _produce_all(sends: list[Callable[[], Awaitable[asyncio.Future[Any]]]], budget_s: float
                       ) -> list[BaseException | None]:
    """Every record enqueued at once, then each acknowledgement awaited, in this task (a task per record, as
    `gather` makes, cost more than the sends). One result per record: None when Kafka holds it, else why not."""
    started = time.monotonic()
    deliveries: list[asyncio.Future[Any] | BaseException] = []
    for send in sends:
        try:
            deliveries.append(await send())
        except Exception as exc:
            deliveries.append(exc)
    return [await _settle(send, delivery, budget_s - (time.monotonic() - started))
            for send, delivery in zip(sends, deliveries, strict=True)]


async def _settle(send: Callable[[], Awaitable[asyncio.Future[Any]]], delivery: asyncio.Future[Any] | BaseException,
                  budget_s: float) -> BaseException | None:
    """One record's first send settled: a transient Kafka error sends it again through `_with_retry` with the
    budget left; too large, or anything else, is the result."""
    try:
        if isinstance(delivery, BaseException):
            raise delivery
        await delivery
        return None
    except TOO_LARGE as exc:
        return exc
    except KafkaError:
        pass
    except Exception as exc:
        return exc
    try:
        await _with_retry(send, budget_s)
        return None
    except Exception as exc:
        return exc


async def _with_retry(send: Callable[[], Awaitable[asyncio.Future[Any]]], budget_s: float,
                      permanent: tuple[type[KafkaError], ...] = TOO_LARGE) -> None:
    """Send and wait for the broker's acknowledgement; transient errors are retried with backoff,
    `permanent` ones raise at once, and a retry budget spent raises EffectsLost."""
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            await (await send())
            return
        except permanent:
            raise
        except KafkaError as exc:
            waited = time.monotonic() - started
            if waited + delay > budget_s or not (exc.retriable or isinstance(exc, KafkaTimeoutError)):
                raise EffectsLost(f"{type(exc).__name__}: {exc} (after {waited:.1f}s)") from exc
            log.warning("produce failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
