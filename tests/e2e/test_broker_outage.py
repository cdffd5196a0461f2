"""The broker stops for 10 s while requests flow: what the ingress cannot produce is a 503
kafka_unavailable, what was accepted is answered or gets a clear error by its deadline, and every process
recovers without a restart."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from infra import kafka_broker
from tests.conftest import Gateway, start_gateway, write_config
from tests.kafka_events import events_of

CLEAR = {(200, None), (503, "kafka_unavailable"), (504, "deadline_exceeded")}


@pytest.fixture(scope="module")
def outage_gateway(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Gateway]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("stops and starts the local broker")
    gateway = start_gateway(bootstrap, write_config(tmp_path_factory.mktemp("outage") / "gateway.yaml", openai_mock),
                            logs)
    yield gateway
    gateway.stop()


def test_a_broker_outage_of_10_s_loses_nothing_and_heals(outage_gateway: Gateway) -> None:
    gateway = outage_gateway
    results: list[tuple[float, float, int, str | None, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=40) as client:
            while not stop.is_set():
                sent = time.monotonic()
                response = client.post(gateway.url + "/v1/gateway/chat",
                                       headers={**gateway.headers(), "x-gateway-timeout-ms": "25000"},
                                       json={"model": "gpt-4o",
                                             "messages": [{"role": "user", "content": uuid.uuid4().hex}]})
                body = response.json()
                results.append((sent, time.monotonic(), response.status_code,
                                (body.get("error") or {}).get("code"), body.get("id")))
                time.sleep(0.05)

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load) for _ in range(4)]
        time.sleep(2)
        kafka_broker.stop()
        down_until = time.monotonic() + 10
        time.sleep(10)
        kafka_broker.start()
        healed = None
        deadline = time.monotonic() + 60
        while healed is None and time.monotonic() < deadline:
            time.sleep(0.5)
            healed = next((end for sent, end, status, _, _ in results if status == 200 and sent > down_until), None)
        stop.set()
        for worker in workers:
            worker.result()

    assert healed is not None, "no request succeeded after the broker came back"
    assert {(status, code) for _, _, status, code, _ in results} <= CLEAR
    assert max(end - sent for sent, end, *_ in results) < 35  # nothing hangs past its deadline
    assert gateway.router is not None and gateway.router.poll() is None  # recovered, not restarted
    assert gateway.ingress is not None and gateway.ingress.poll() is None
    ready = httpx.get(gateway.url + "/ready")
    for _ in range(20):
        if ready.status_code == 200:
            break
        time.sleep(0.5)
        ready = httpx.get(gateway.url + "/ready")
    assert ready.status_code == 200, ready.text
    answered = {request_id for *_, status, _, request_id in results if status == 200}
    usage = events_of(gateway.bootstrap, gateway.topics.usage, answered)
    assert {u["request_id"] for u in usage} == answered
