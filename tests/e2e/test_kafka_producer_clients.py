"""A service that speaks Kafka, not HTTP: it produces RequestReceived onto the requests topic, naming its
own reply topic, and reads the same ResponseCompleted the ingress would have turned into JSON. Who may
ask is checked: a request neither signed by an ingress nor from a declared service is refused."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.secrets import service_signature
from schemas import codec
from tests.conftest import GATEWAY_KEY, LEDGER_SECRET, Gateway
from tests.kafka_events import events_of, read_events, service_request


async def ask_over_kafka(gateway: Gateway, model: str, fallback: list[str], **fields: Any
                         ) -> tuple[str, str, dict[str, Any]]:
    """Produce a request as the billing service and wait for its answer on billing's reply topic."""
    reply_topic = gateway.service_reply_topics()[0]
    consumer = AIOKafkaConsumer(reply_topic, bootstrap_servers=gateway.bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=gateway.bootstrap)
    await consumer.start()
    await producer.start()
    try:
        request = service_request(reply_topic, model, fallback, **fields)
        await producer.send_and_wait(gateway.topics.requests, codec.encode("RequestReceived", request),
                                     key=request["request_id"].encode(), headers=codec.headers("RequestReceived"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(consumer.getone(), 30)
            name, reply = codec.decode(message.headers, message.value or b"")
            if reply["request_id"] == request["request_id"]:
                return request["request_id"], name, reply
        raise AssertionError("no answer")
    finally:
        await producer.stop()
        await consumer.stop()


def test_a_service_producing_onto_kafka_gets_the_same_answer(gateway: Gateway) -> None:
    request_id, name, reply = asyncio.run(ask_over_kafka(gateway, "flaky-500", ["gpt-4o"]))

    assert name == "ResponseCompleted"
    assert reply["request_id"] == request_id
    assert reply["model"] == "gpt-4o"
    assert reply["content"] == "Hello from the mock! You said: Summarise invoice 42"
    assert reply["attempts"] == 3
    assert reply["cost_usd"] > 0
    usage = gateway.events(gateway.topics.usage, request_id)
    assert usage[0]["project"] == "billing"


def test_a_service_asking_for_an_unservable_model_gets_request_failed(gateway: Gateway) -> None:
    _, name, reply = asyncio.run(ask_over_kafka(gateway, "claude-sonnet-4-20250514", []))

    assert name == "RequestFailed"
    assert reply["status"] == 503
    assert reply["code"] == "provider_not_configured"


async def _produce(gateway: Gateway, request: dict[str, Any], headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=gateway.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(gateway.topics.requests, codec.encode("RequestReceived", request),
                                     key=request["request_id"].encode(), headers=headers)
    finally:
        await producer.stop()


def _spoofs(gateway: Gateway) -> list[tuple[dict[str, Any], str]]:
    """Requests that pretend: to come through the ingress for a project, or to be a service they are not."""
    billing_topic = gateway.service_reply_topics()[0]
    return [
        ({**service_request(gateway.topics.replies, "gpt-4o", []), "project": "proj-a", "key_id": "a1b2c3",
          "reply_partition": 0}, "neither signed by an ingress"),
        (service_request(billing_topic, "gpt-4o", [], key_id="service:payroll"), "no service named 'payroll'"),
        (service_request(billing_topic, "gpt-4o", [], project="proj-a"), "acts for project 'billing'"),
        (service_request("someone-elses-topic", "gpt-4o", []), "may be answered on"),
    ]


def test_spoofed_requests_are_refused_to_the_undeliverable_topic_and_never_call_upstream(
        gateway: Gateway, openai_mock: str) -> None:
    spoofs = _spoofs(gateway)
    for i, (request, _) in enumerate(spoofs):
        request["messages"] = [{"role": "user", "content": f"spoof {request['request_id']} {i}"}]
        asyncio.run(_produce(gateway, request, codec.headers("RequestReceived")))

    for request, why in spoofs:
        refused = gateway.events(gateway.topics.undeliverable, request["request_id"], timeout_s=15)
        assert refused and refused[0]["code"] == "forbidden" and refused[0]["status"] == 403
        assert why in refused[0]["message"]
        assert gateway.events(gateway.topics.replies, request["request_id"], timeout_s=0) == []
        assert gateway.events(gateway.topics.usage, request["request_id"], timeout_s=0) == []
    calls = httpx.get(openai_mock.removesuffix("/v1") + "/mock/stats").json()["calls"]
    assert not [text for text in calls if text.startswith("spoof ")]


def test_a_forged_ingress_signature_is_refused(gateway: Gateway) -> None:
    request = {**service_request(gateway.topics.replies, "gpt-4o", []), "project": "proj-a", "key_id": "a1b2c3",
               "reply_partition": 0}
    asyncio.run(_produce(gateway, request, [*codec.headers("RequestReceived"), ("gateway-signature", b"00" * 32)]))

    refused = gateway.events(gateway.topics.undeliverable, request["request_id"], timeout_s=15)
    assert refused and refused[0]["code"] == "forbidden"


def test_a_service_with_a_secret_is_answered_only_when_it_signs_its_requests(gateway: Gateway) -> None:
    reply_topic = gateway.service_reply_topics("ledger")[0]
    signed, unsigned, forged = (service_request(reply_topic, "gpt-4o", [], project="ledger", key_id="service:ledger")
                                for _ in range(3))
    headers = codec.headers("RequestReceived")
    asyncio.run(_produce(gateway, signed, [*headers, ("gateway-signature",
                                                      service_signature(LEDGER_SECRET, signed).encode())]))
    asyncio.run(_produce(gateway, unsigned, headers))
    asyncio.run(_produce(gateway, forged, [*headers, ("gateway-signature",
                                                      service_signature("a guess", forged).encode())]))

    answered = events_of(gateway.bootstrap, reply_topic, {signed["request_id"]}, timeout_s=15)
    assert [a["content"] for a in answered] == ["Hello from the mock! You said: Summarise invoice 42"]
    for request, why in ((unsigned, "none"), (forged, "wrong")):
        refused = gateway.events(gateway.topics.undeliverable, request["request_id"], timeout_s=15)
        assert refused and refused[0]["code"] == "forbidden"
        assert f"must sign its requests (gateway-signature): {why}" in refused[0]["message"]
    assert {a["request_id"] for _, a in read_events(gateway.bootstrap, reply_topic)} == {signed["request_id"]}


def test_requests_through_the_ingress_are_signed_and_answered(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "signed"}]}, timeout=30)

    assert response.status_code == 200


def test_logs_are_json_lines_with_the_request_id_and_without_prompts(gateway: Gateway) -> None:
    secret_prompt = f"my private prompt {uuid.uuid4().hex}"
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": secret_prompt}]},
                          timeout=30)
    assert response.status_code == 200
    spoof = {**service_request(gateway.topics.replies, "gpt-4o", []), "project": "proj-a", "key_id": "a1b2c3",
             "reply_partition": 0}
    asyncio.run(_produce(gateway, spoof, codec.headers("RequestReceived")))
    assert gateway.events(gateway.topics.undeliverable, spoof["request_id"], timeout_s=15)

    lines = (gateway.logs / "router.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    refused = [e for e in entries if e.get("request_id") == spoof["request_id"]]
    assert refused and refused[0]["level"] == "warning" and "refused request" in refused[0]["message"]
    for log in gateway.logs.glob("*.log"):
        assert secret_prompt not in log.read_text()
