"""A stream's chunk lost to a transient Kafka error (the partition's leader gone) is sent again, so the stream
goes on; a chunk too large for a record fails, and the stream then ends with an error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, NodeNotReadyError

from infra.config import Environment, GatewayConfig, Settings
from processors.effects import Effects

REQUEST = {"request_id": "gw-1", "project": "p", "reply_topic": "replies", "reply_partition": 0}
CHUNK = {"request_id": "gw-1", "project": "p", "run_id": "run", "model": "m", "provider": "openai", "seq": 3,
         "content": "Hel", "tool_calls": [], "finish_reason": None}


class Producer:
    """Answers each send with the next outcome: None delivered, an exception failed."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = self.outcomes.pop(0)
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
        return future


def _effects(producer: Producer) -> Effects:
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-test-effects", "project": "p"}]})
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
