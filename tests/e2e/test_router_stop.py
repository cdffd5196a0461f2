"""A router told to stop while its poll is on its way back starts nothing of what that poll brought: it
stops at once, leaves those requests uncommitted, and the router after it answers each of them once.

The race cannot be arranged from outside the process (a stop lands inside a 100 ms poll only by chance), so
the router runs in this process and its real consumer's poll is wrapped to deliver the stop the moment the
records are back."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra import config, kafka_clients
from processors.router import RouterWorker
from schemas import codec
from tests.conftest import MOCK_OPENAI_KEY, write_config
from tests.kafka_events import service_request


@pytest.fixture
def settings(bootstrap: str, openai_mock: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[config.Settings]:
    monkeypatch.setenv("GATEWAY_CONFIG", str(write_config(tmp_path / "gateway.yaml", openai_mock)))
    monkeypatch.setenv("GATEWAY_TOPIC_PREFIX", f"stop-{uuid.uuid4().hex[:8]}.")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("TEST_OPENAI_KEY", MOCK_OPENAI_KEY)
    loaded = config.load()
    reply_topic = loaded.config.services["billing"].reply_topics[0]
    asyncio.run(kafka_clients.ensure_topics(bootstrap, loaded.topics, reply_topics={reply_topic: 1}))
    thresholds = gc.get_threshold()
    yield loaded
    gc.unfreeze()  # a router freezes its start-up heap (infra/heap.py); this one shared the test's process
    gc.set_threshold(*thresholds)


def _stop_when_the_poll_returns(router: RouterWorker, polled: list[int]) -> None:
    poll = router._consumer.getmany

    async def getmany(*args: Any, **kwargs: Any) -> Any:
        batch = await poll(*args, **kwargs)
        if batch:
            router.stop()
            polled.append(sum(len(records) for records in batch.values()))
        return batch

    router._consumer.getmany = getmany  # type: ignore[method-assign]


async def _answers(settings: config.Settings, request_ids: set[str], wait_s: float) -> list[tuple[str, str]]:
    """(event, request id) of every reply to these requests on billing's reply topic: what came within `wait_s`,
    or, once each of them has one, what came up to a second after that (a second answer would)."""
    consumer = AIOKafkaConsumer(settings.config.services["billing"].reply_topics[0],
                                bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[str, str]] = []
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            if {request_id for _, request_id in found} == request_ids:
                deadline = min(deadline, time.monotonic() + 1)
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    name, reply = codec.decode(record.headers, record.value or b"")
                    if reply["request_id"] in request_ids:
                        found.append((name, reply["request_id"]))
    finally:
        await consumer.stop()
    return found


async def _scenario(settings: config.Settings) -> None:
    reply_topic = settings.config.services["billing"].reply_topics[0]
    # "slow" answers after 3 s: a stopping router that ran what its last poll brought would take that long.
    requests = [service_request(reply_topic, "slow", []) for _ in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for request in requests:
            await producer.send_and_wait(settings.topics.requests, codec.encode("RequestReceived", request),
                                         key=request["request_id"].encode(), headers=codec.headers("RequestReceived"))
    finally:
        await producer.stop()
    request_ids = {request["request_id"] for request in requests}

    first = RouterWorker(settings)
    polled: list[int] = []
    _stop_when_the_poll_returns(first, polled)
    await asyncio.wait_for(first.run(), 60)  # returns after its first poll with records
    assert polled and polled[0] >= 1
    # It ran none of them: a stopping router waits for what it started (3 s here) before it returns.
    assert await _answers(settings, request_ids, 1) == []

    second = RouterWorker(settings)
    serving = asyncio.create_task(second.run())
    try:
        answers = await _answers(settings, request_ids, 25)
    finally:
        second.stop()
        await serving
    assert sorted(answers) == sorted(("ResponseCompleted", request_id) for request_id in request_ids)


def test_a_router_stopped_while_its_poll_returns_starts_none_of_it(settings: config.Settings) -> None:
    asyncio.run(_scenario(settings))
