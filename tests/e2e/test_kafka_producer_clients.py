"""A service that speaks Kafka, not HTTP: it produces RequestReceived onto the requests topic, naming its
own reply topic, and reads the same ResponseCompleted the ingress would have turned into JSON."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import codec
from tests.conftest import Gateway


async def ask_over_kafka(bootstrap: str, requests_topic: str, model: str, fallback: list[str], **fields: object
                         ) -> tuple[str, str, dict]:
    reply_topic = f"billing-service-replies-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(reply_topic, 1, 1)])
    await admin.close()

    consumer = AIOKafkaConsumer(reply_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        now = int(time.time() * 1000)
        request = {
            "request_id": str(uuid.uuid4()), "project": "billing", "key_id": "service:billing",
            "received_at_ms": now, "deadline_ms": now + 30_000, "reply_topic": reply_topic,
            "model": model, "fallback": fallback, "max_tokens": 64,
            "messages": [{"role": "user", "content": "Summarise invoice 42"}], **fields,
        }
        await producer.send_and_wait(requests_topic, codec.encode("RequestReceived", request), key=b"billing",
                                     headers=codec.headers("RequestReceived"))
        message = await asyncio.wait_for(consumer.getone(), 30)
        name, reply = codec.decode(message.headers, message.value)
        return request["request_id"], name, reply
    finally:
        await producer.stop()
        await consumer.stop()


def test_a_service_producing_onto_kafka_gets_the_same_answer(gateway: Gateway) -> None:
    request_id, name, reply = asyncio.run(
        ask_over_kafka(gateway.bootstrap, gateway.topics.requests, "flaky-500", ["gpt-4o"])
    )

    assert name == "ResponseCompleted"
    assert reply["request_id"] == request_id
    assert reply["model"] == "gpt-4o"
    assert reply["content"] == "Hello from the mock! You said: Summarise invoice 42"
    assert reply["attempts"] == 3
    assert reply["cost_usd"] > 0
    usage = gateway.events(gateway.topics.usage, request_id)
    assert usage[0]["project"] == "billing"


def test_a_service_asking_for_an_unservable_model_gets_request_failed(gateway: Gateway) -> None:
    _, name, reply = asyncio.run(
        ask_over_kafka(gateway.bootstrap, gateway.topics.requests, "claude-sonnet-4-20250514", [])
    )

    assert name == "RequestFailed"
    assert reply["status"] == 503
    assert reply["code"] == "provider_not_configured"
