"""A stream's chunk lost to a transient Kafka error (the partition's leader gone) is sent again, so the stream
goes on; a chunk too large for a record fails, and the stream then ends with an error. A request's attempts and
usage: one lost to a transient error is sent again, one too large is logged and the others still delivered,
and Kafka refusing them past `router.effects_retry_s` stops the worker (EffectsLost) so the request is
redelivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError, NodeNotReadyError

from infra.config import Environment, GatewayConfig, Settings
from processors.effects import Effects, EffectsLost
from processors.handler import Outcome

REQUEST = {"request_id": "gw-1", "project": "p", "reply_topic": "replies", "reply_partition": 0}
CHUNK = {"request_id": "gw-1", "project": "p", "run_id": "run", "model": "m", "provider": "openai", "seq": 3,
         "content": "Hel", "tool_calls": [], "finish_reason": None}


class Producer:
    """Answers each send with the next outcome: None delivered, an exception failed."""

    def __init__(self, *outcomes: Exception | None, then: Exception | None = None) -> None:
        self.outcomes = list(outcomes)
        self.then = then  # every send after the outcomes
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = self.outcomes.pop(0) if self.outcomes else self.then
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
        return future


def _effects(producer: Producer, retry_s: float = 30) -> Effects:
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-test-effects", "project": "p"}],
                                           "router": {"effects_retry_s": retry_s}})
    return Effects(Settings(config, Environment(), Path("gateway.yaml")), producer, producer)  # type: ignore[arg-type]


def test_a_chunk_lost_to_a_transient_error_is_sent_again_and_delivered() -> None:
    async def run() -> None:
        producer = Producer(NodeNotReadyError("leader gone"), None)
        delivered = await _effects(producer).chunk(REQUEST, CHUNK, None)
        await asyncio.wait_for(delivered, 5)
        assert len(producer.sent) == 2 and producer.sent[0] == producer.sent[1]  # the same record, same number
    asyncio.run(run())


def test_a_chunk_too_large_for_a_record_fails_its_delivery() -> None:
    async def run() -> None:
        producer = Producer(MessageSizeTooLargeError("too large"))
        delivered = await _effects(producer).chunk(REQUEST, CHUNK, None)
        try:
            await asyncio.wait_for(delivered, 5)
        except MessageSizeTooLargeError:
            pass
        else:
            raise AssertionError("delivered")
        assert len(producer.sent) == 1
    asyncio.run(run())


def _answered() -> tuple[dict[str, Any], Outcome]:
    request = {**REQUEST, "reply_topic": "gw.replies", "key_id": "key_x"}
    common = {"request_id": "gw-1", "project": "p", "model": "m", "provider": "openai"}
    outcome = Outcome(
        "ResponseCompleted",
        {**common, "content": "Hi", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 1,
         "total_tokens": 4, "cost_usd": 0.0, "latency_ms": 5.0, "attempts": 1, "completed_at_ms": 1},
        [{**common, "attempt_id": "a1", "attempt_no": 1, "started_at_ms": 1, "duration_ms": 4.0, "outcome": "ok"}],
        {**common, "event_id": "gw-1", "key_id": "key_x", "status": "ok", "prompt_tokens": 3, "completion_tokens": 1,
         "total_tokens": 4, "cost_usd": 0.0, "latency_ms": 5.0, "attempts": 1, "recorded_at_ms": 1},
    )
    return request, outcome


def test_an_audit_record_lost_to_a_transient_error_is_sent_again() -> None:
    async def run() -> None:
        producer = Producer(None, NodeNotReadyError("leader gone"), None, None)  # reply, attempt, usage, attempt
        await _effects(producer).emit(*_answered(), None, [])
        _, attempt, usage, again = producer.sent
        assert again == attempt and usage != attempt
    asyncio.run(run())


def test_an_audit_record_too_large_is_logged_and_the_others_delivered(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        producer = Producer(None, MessageSizeTooLargeError("too large"), None)
        await _effects(producer).emit(*_answered(), None, [])
        assert len(producer.sent) == 3
    asyncio.run(run())
    assert "an audit record could not be produced" in caplog.text


def test_kafka_refusing_the_audit_records_past_the_budget_stops_the_worker() -> None:
    async def run() -> None:
        producer = Producer(None, then=NodeNotReadyError("leader gone"))
        with pytest.raises(EffectsLost):
            await asyncio.wait_for(_effects(producer, retry_s=1).emit(*_answered(), None, []), 10)
        assert len(producer.sent) > 3  # both records were sent again before giving up
    asyncio.run(run())
