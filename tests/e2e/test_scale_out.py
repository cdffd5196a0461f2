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

from tests.conftest import Gateway, stop_process
from tests.e2e.test_streaming import native_events
from tests.kafka_events import read_events


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
    usage = [u for _, u in read_events(gateway.bootstrap, gateway.topics.usage) if u["request_id"] in ids]
    attempts = [a for _, a in read_events(gateway.bootstrap, gateway.topics.attempts) if a["request_id"] in ids]
    assert len(usage) == len(ids) and len(attempts) == len(ids)
