"""Scale-out by partitions: routers join and leave under load, and every request is still answered once,
each upstream call made once, no stream interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Gateway, free_port, stop_process, wait_for_port
from tests.e2e.test_streaming import native_events
from tests.kafka_events import events_of


def _ask(gateway: Gateway, text: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/gateway/chat", headers=gateway.headers(), timeout=60,
                      json={"model": "slowish", "messages": [{"role": "user", "content": text}]})


def _stream(gateway: Gateway, text: str) -> list[tuple[str, dict[str, Any]]]:
    return native_events(gateway, {"model": "long-stream", "messages": [{"role": "user", "content": text}]})


def test_a_router_joining_and_leaving_under_load_changes_no_answer(gateway: Gateway, openai_mock: str) -> None:
    run = uuid.uuid4().hex[:6]
    texts = [f"scale {run} {i}" for i in range(40)]
    streams = [f"scale {run} stream {i}" for i in range(4)]
    with ThreadPoolExecutor(48) as pool:
        answers, streamed = [], [pool.submit(_stream, gateway, t) for t in streams[:2]]
        for i, text in enumerate(texts):
            if i == 10:
                with open(gateway.logs / "router-2.log", "ab") as log:
                    joining = subprocess.Popen([sys.executable, "-m", "infra.cli", "router"], env=gateway.env,
                                               stdout=log, stderr=log)
            if i == 25:
                streamed += [pool.submit(_stream, gateway, t) for t in streams[2:]]
                joining.send_signal(signal.SIGTERM)  # leaves the group: its partitions move back
            answers.append(pool.submit(_ask, gateway, text))
            time.sleep(0.2)
        responses = [a.result() for a in answers]
        stream_events = [s.result() for s in streamed]
    stop_process(joining)

    assert [r.status_code for r in responses] == [200] * len(texts)
    assert [r.json()["content"] for r in responses] == [f"Hello from the mock! You said: {t}" for t in texts]
    for events in stream_events:
        assert events[-1][0] == "end", events[-1]
    calls = httpx.get(openai_mock.removesuffix("/v1") + "/mock/stats").json()["calls"]
    assert {t: calls.get(t) for t in texts + streams} == {t: 1 for t in texts + streams}
    ids = {r.json()["id"] for r in responses} | {e[0][1]["id"] for e in stream_events}
    usage = events_of(gateway.bootstrap, gateway.topics.usage, ids)
    attempts = events_of(gateway.bootstrap, gateway.topics.attempts, ids)
    assert len(usage) == len(ids) and len(attempts) == len(ids)


def _start_ingress(gateway: Gateway, port: int, instance_id: str) -> subprocess.Popen[bytes]:
    with open(gateway.logs / f"ingress-{instance_id}.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.cli", "ingress", "--port", str(port),
                                    "--instance-id", instance_id], env=gateway.env, stdout=log, stderr=log)
    wait_for_port(port, process)
    return process


def _ready(port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"http://127.0.0.1:{port}/ready")
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.2)
    raise AssertionError(f"ingress on {port} not ready")


def test_ingress_instances_claim_their_own_reply_partitions(gateway: Gateway) -> None:
    ports = [free_port(), free_port()]
    first, second = (_start_ingress(gateway, port, f"claims-{i}") for i, port in enumerate(ports))
    try:
        partitions = [_ready(port)["reply_partition"] for port in ports]
        assert len({*partitions, 0}) == 3  # distinct, and not the fixture's own instance's partition 0
        for port in ports:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                                  json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"via {port}"}]})
            assert response.json()["content"] == f"Hello from the mock! You said: via {port}"

        first.send_signal(signal.SIGKILL)  # no tombstone: its lease is still live
        first.wait()
        first = _start_ingress(gateway, ports[0], "claims-0")
        assert _ready(ports[0])["reply_partition"] == partitions[0]  # its own lease, taken back at once

        third_port = free_port()
        third = _start_ingress(gateway, third_port, "claims-2")
        assert _ready(third_port)["reply_partition"] not in (0, *partitions)
        stop_process(third)
    finally:
        stop_process(first)
        stop_process(second)
