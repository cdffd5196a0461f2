"""Which records the gateway compresses: the request path (requests, replies) as
`kafka.request_path_compression` says, everything else as `kafka.compression`; how soon a record enqueued is
written to the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection

from infra import kafka_clients
from infra.config import Kafka
from tests.kafka_events import new_topic


def _compression(kafka: Kafka, request_path: bool) -> str | None:
    async def made() -> str | None:
        producer: AIOKafkaProducer = kafka_clients.producer("127.0.0.1:1", kafka=kafka, request_path=request_path)
        await producer.stop()
        return producer._compression_type  # type: ignore[no-any-return]

    return asyncio.run(made())


def test_by_default_the_request_path_is_not_compressed_and_the_audit_trail_is() -> None:
    assert _compression(Kafka(), request_path=True) is None
    assert _compression(Kafka(), request_path=False) == "zstd"


def test_each_path_takes_its_own_setting() -> None:
    kafka = Kafka(compression="none", request_path_compression="lz4")

    assert _compression(kafka, request_path=True) == "lz4"
    assert _compression(kafka, request_path=False) is None


def test_a_record_enqueued_is_written_to_the_broker_within_the_sender_turns(
        bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a stream's first token relies on (`processors/chunks.py`): after `let_sender_write`, its produce
    request is on the socket, though the task that sent it has not waited for anything."""
    written: list[str] = []
    send = AIOKafkaConnection.send

    def spy(self: AIOKafkaConnection, request: Any, *args: Any, **kwargs: Any) -> Any:
        written.append(type(request).__name__)
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConnection, "send", spy)
    asyncio.run(_sent_and_written(bootstrap, written))


async def _sent_and_written(bootstrap: str, written: list[str]) -> None:
    topic = await new_topic(bootstrap, "sender-turns")
    producer = kafka_clients.producer(bootstrap)
    await producer.start()
    try:
        await (await producer.send(topic, b"warm"))  # metadata and connection in place
        for _ in range(3):
            written.clear()
            delivered = await producer.send(topic, b"token")
            await kafka_clients.let_sender_write()
            assert [name for name in written if name.startswith("ProduceRequest")], written
            await delivered
    finally:
        await producer.stop()
