"""Which records the gateway compresses: the request path (requests, replies) as
`kafka.request_path_compression` says, everything else as `kafka.compression`."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from infra import kafka_clients
from infra.config import Kafka


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
