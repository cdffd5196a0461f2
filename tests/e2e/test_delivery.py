"""Every accepted request is answered, once, whatever its effects or its input do: answers too large for a
Kafka record, reply topics that do not exist, a handler that raises, garbage on the reply partition, a
full router asked to cancel, streams that end wrong or run long."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.config import Kafka
from infra.kafka_clients import TopicTooSmall, ensure_topics
from schemas import codec
from schemas.topics import REPLIES, TopicNames
from tests.conftest import Gateway, start_gateway, stop_process, write_config
from tests.e2e.test_kafka_producer_clients import ask_over_kafka
from tests.e2e.test_streaming import native_events


@pytest.fixture(scope="module")
def small_gateway(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Gateway]:
    """Kafka records of at most 1 MiB, and a router that runs two requests at a time."""
    config = write_config(tmp_path_factory.mktemp("small") / "gateway.yaml", openai_mock,
                          router={"circuit_failures": 1000, "max_in_flight": 2, "max_in_flight_per_partition": 2})
    raw = config.read_text() + "kafka: {max_message_bytes: 1048576}\n"
    config.write_text(raw)
    gateway = start_gateway(bootstrap, config, logs)
    yield gateway
    gateway.stop()


def test_2048_embeddings_of_3072_floats_come_through_kafka(gateway: Gateway) -> None:
    texts = [f"text number {i}" for i in range(2048)]
    response = httpx.post(gateway.url + "/v1/embeddings", headers=gateway.headers(), timeout=120, json={
        "model": "text-embedding-3-large", "input": texts, "dimensions": 3072, "encoding_format": "base64"})

    assert response.status_code == 200, response.text[:500]
    data = response.json()["data"]
    assert len(data) == 2048
    assert all(len(base64.b64decode(d["embedding"])) == 3072 * 4 for d in (data[0], data[-1]))


def test_an_answer_larger_than_a_kafka_record_is_a_clear_502_and_still_billed(small_gateway: Gateway) -> None:
    response = httpx.post(small_gateway.url + "/v1/images/generations", headers=small_gateway.headers(), timeout=30,
                          json={"model": "dall-e-3", "prompt": "a lighthouse", "size": "1024x1024",
                                "response_format": "b64_json"})

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "response_too_large"
    assert "kafka.max_message_bytes (1048576)" in error["message"]
    usage = small_gateway.events(small_gateway.topics.usage, response.headers["x-request-id"])
    assert len(usage) == 1 and usage[0]["cost_usd"] > 0  # the provider made the image: it is paid for
    # The router is not stuck behind it: the next request is answered.
    ok = httpx.post(small_gateway.url + "/v1/gateway/chat", headers=small_gateway.headers(), timeout=30,
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "after the big one"}]})
    assert ok.status_code == 200


async def _produce(bootstrap: str, topic: str, event: str, record: dict[str, Any], key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, codec.encode(event, record), key=key, headers=codec.headers(event))
    finally:
        await producer.stop()


def _kafka_request(reply_topic: str, **fields: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {"request_id": str(uuid.uuid4()), "project": "billing", "key_id": "service:billing",
            "received_at_ms": now, "deadline_ms": now + 30_000, "reply_topic": reply_topic, "model": "gpt-4o",
            "fallback": [], "messages": [{"role": "user", "content": "hello"}], **fields}


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _committed_everything(bootstrap: str, group: str, topic: str, timeout_s: float = 10) -> bool:
    """Has the router's group committed up to the end of every partition of the requests topic?"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(6)]
        ends = await reader.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end > 0):
                return True
            await asyncio.sleep(0.3)
        return False
    finally:
        await reader.stop()
        await admin.close()


def test_a_reply_topic_that_does_not_exist_goes_to_the_undeliverable_topic(gateway: Gateway) -> None:
    gone = gateway.service_reply_topics()[1]
    asyncio.run(_delete_topic(gateway.bootstrap, gone))
    request = _kafka_request(gone)
    asyncio.run(_produce(gateway.bootstrap, gateway.topics.requests, "RequestReceived", request,
                         request["request_id"].encode()))

    refused = gateway.events(gateway.topics.undeliverable, request["request_id"], timeout_s=15)
    assert refused and refused[0]["code"] == "undeliverable"
    assert gone in refused[0]["message"]
    group = gateway.env["GATEWAY_TOPIC_PREFIX"] + "router"
    assert asyncio.run(_committed_everything(gateway.bootstrap, group, gateway.topics.requests))


def test_a_request_that_makes_the_handler_raise_is_answered_with_an_internal_error(gateway: Gateway) -> None:
    """A Kafka client's request with a response_format that is not JSON text: the adapter raises."""
    _, name, reply = asyncio.run(ask_over_kafka(gateway, "gpt-4o", [], response_format_json="{oops"))

    assert name == "RequestFailed"
    assert reply["status"] == 500 and reply["code"] == "internal_error"
    usage = gateway.events(gateway.topics.usage, reply["request_id"])
    assert len(usage) == 1 and usage[0]["error_code"] == "internal_error"


@pytest.mark.parametrize("model", ["claude-3-5-haiku-20241022", "gemini-pro", "bedrock-claude-3-haiku"])
def test_tool_arguments_that_are_not_json_are_a_400_naming_the_field(providers_gateway: Gateway, model: str
                                                                     ) -> None:
    response = httpx.post(providers_gateway.url + "/v1/chat/completions", headers=providers_gateway.headers(),
                          timeout=30, json={"model": model, "messages": [
                              {"role": "user", "content": "weather?"},
                              {"role": "assistant", "content": None, "tool_calls": [
                                  {"id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": "{city: Paris"}}]},
                              {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_value"
    assert "messages[1].tool_calls[0].function.arguments" in error["message"]


def test_garbage_on_the_reply_partition_does_not_stop_the_ingress(gateway: Gateway) -> None:
    async def litter() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=gateway.bootstrap)
        await producer.start()
        try:
            for headers in ([], codec.headers("ResponseCompleted"), [("event", b"Nonsense"), ("schema-version", b"1")]):
                for partition in range(REPLIES.partitions):
                    await producer.send_and_wait(gateway.topics.replies, b"\xff\xfe\x00garbage",
                                                 partition=partition, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(litter())
    time.sleep(0.5)

    assert httpx.get(gateway.url + "/ready").status_code == 200
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "still there?"}]})
    assert response.status_code == 200


def test_a_cancel_reaches_a_full_router(small_gateway: Gateway) -> None:
    """Both slots are taken by slow requests; a streaming caller who leaves is still cancelled at once."""
    def slow(i: int) -> httpx.Response:
        return httpx.post(small_gateway.url + "/v1/gateway/chat", headers=small_gateway.headers(), timeout=30,
                          json={"model": "slow", "messages": [{"role": "user", "content": f"slow {i}"}]})

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        with httpx.stream("POST", small_gateway.url + "/v1/gateway/chat", headers=small_gateway.headers(),
                          timeout=30, json={"model": "long-stream", "stream": True,
                                            "messages": [{"role": "user", "content": "a long one"}]}) as response:
            request_id = response.headers["x-request-id"]
            next(response.iter_lines())
            blockers = [pool.submit(slow, i) for i in range(2)]
            time.sleep(0.5)  # the stream and one slow request hold both slots; the other slow one waits
            left_at = time.time()
        usage = small_gateway.events(small_gateway.topics.usage, request_id, timeout_s=10)
        assert usage and usage[0]["error_code"] == "client_disconnected"
        assert usage[0]["recorded_at_ms"] / 1000 - left_at < 1.5  # not after a slow request freed a slot
        assert all(b.result().status_code == 200 for b in blockers)


def test_a_stream_longer_than_every_per_call_limit_completes(gateway: Gateway) -> None:
    events = native_events(gateway, {"model": "patient-stream", "messages": [{"role": "user", "content": "go"}]})

    assert events[-1][0] == "end"
    assert sum(1 for name, _ in events if name == "delta") >= 1
    assert "".join(d["content"] for name, d in events if name == "delta").count("tok") == 30


def test_a_stream_silent_past_the_idle_limit_fails_fast(gateway: Gateway) -> None:
    started = time.monotonic()
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30, json={
        "model": "stalling-stream", "stream": True, "messages": [{"role": "user", "content": "go"}]})

    assert response.status_code == 504, response.text
    assert "idle_timeout_s" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_a_stream_that_ends_without_its_terminal_event_is_an_error(gateway: Gateway) -> None:
    events = native_events(gateway, {"model": "no-done", "messages": [{"role": "user", "content": "go"}]})

    assert events[-1][0] == "error"
    assert "terminal event" in events[-1][1]["error"]["message"]


def test_a_stream_in_the_wrong_framing_fails_over_at_once(providers_gateway: Gateway) -> None:
    started = time.monotonic()
    events = native_events(providers_gateway, {
        "model": "bedrock-sse-framed", "fallback": ["gpt-4o-mini"],
        "messages": [{"role": "user", "content": "framed"}]})

    assert events[0] == ("start", events[0][1]) and events[0][1]["model"] == "gpt-4o-mini"
    assert events[-1][0] == "end"
    assert time.monotonic() - started < 5
    attempts = providers_gateway.events(providers_gateway.topics.attempts, events[0][1]["id"])
    assert "text/event-stream" in (attempts[0]["error_message"] or "")


def test_a_request_delivered_again_to_a_restarted_router_is_not_run_twice(gateway: Gateway, openai_mock: str
                                                                           ) -> None:
    text = f"once {uuid.uuid4().hex}"
    request_id, name, _ = asyncio.run(ask_over_kafka(gateway, "gpt-4o", [],
                                                     messages=[{"role": "user", "content": text}]))
    assert name == "ResponseCompleted"
    assert gateway.router is not None
    stop_process(gateway.router)  # a new process: nothing in memory but what it restores from the log
    gateway.start_router()
    request = {**_kafka_request(gateway.service_reply_topics()[0]), "request_id": request_id,
               "messages": [{"role": "user", "content": text}]}

    asyncio.run(_produce(gateway.bootstrap, gateway.topics.requests, "RequestReceived", request,
                         request_id.encode()))  # the same request again, as a redelivery would bring it
    group = gateway.env["GATEWAY_TOPIC_PREFIX"] + "router"
    assert asyncio.run(_committed_everything(gateway.bootstrap, group, gateway.topics.requests, timeout_s=30))

    calls = httpx.get(openai_mock.removesuffix("/v1") + "/mock/stats").json()["calls"]
    assert calls[text] == 1
    assert len(gateway.events(gateway.service_reply_topics()[0], request_id, timeout_s=0)) == 1
    assert len(gateway.events(gateway.topics.usage, request_id, timeout_s=0)) == 1


def test_an_existing_topic_that_keeps_smaller_records_stops_the_gateway_at_start(bootstrap: str) -> None:
    names = TopicNames.for_prefix(f"small-{uuid.uuid4().hex[:6]}.")
    asyncio.run(ensure_topics(bootstrap, names, kafka=Kafka(max_message_bytes=1 << 20)))

    with pytest.raises(TopicTooSmall, match=r"keeps records of at most 1048576 bytes"):
        asyncio.run(ensure_topics(bootstrap, names))  # the default: 32 MiB records
