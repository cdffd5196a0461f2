"""`gateway up --ingress 2 --routers 2`: two ingress processes on one port, each with its own reply
partition, two routers in one group, and a process that dies is started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import GATEWAY_KEY, Gateway, free_port, stop_process


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def _total(exposition: str, prefix: str, label: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
               if line.startswith(prefix) and label in line)


def test_gateway_up_runs_supervised_processes_behind_one_port(gateway: Gateway, logs: Path, tmp_path: Path) -> None:
    port = free_port()
    config = str(tmp_path / "gateway.yaml")  # the fixture's configuration, with its own analytics process
    Path(config).write_text(Path(gateway.env["GATEWAY_CONFIG"]).read_text()
                            + f"analytics: {{url: 'http://127.0.0.1:{free_port()}'}}\n")
    env = {**gateway.env, "GATEWAY_TOPIC_PREFIX": f"up-{uuid.uuid4().hex[:6]}.",  # its own topics and group
           "GATEWAY_HOME": str(tmp_path / "home")}
    with open(logs / "gateway-up.log", "ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "infra.cli", "--config", config, "up", "--port", str(port),
                               "--ingress", "2", "--routers", "2"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while "gateway ready at" not in (logs / "gateway-up.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # every process started and ready: from now on a dead one is started again
        partitions: set[int] = set()
        while len(partitions) < 2 and time.monotonic() < deadline:  # connections spread over both processes
            try:
                with httpx.Client() as client:  # a new connection each time
                    ready = client.get(url + "/ready")
                if ready.status_code == 200:
                    partitions.add(ready.json()["reply_partition"])
            except httpx.HTTPError:
                time.sleep(0.2)
        assert len(partitions) == 2
        routers = _pids(f"--config {config} router --instance-id router-1")
        assert len(routers) == 1

        os.kill(routers[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while not (_pids(f"--config {config} router --instance-id router-1")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pids(f"--config {config} router --instance-id router-1") not in ([], routers)

        for i in range(20):
            response = httpx.post(url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                                  timeout=30, json={"model": "gpt-4o",
                                                    "messages": [{"role": "user", "content": f"up {i}"}]})
            assert response.json()["content"] == f"Hello from the mock! You said: up {i}"
        # One scrape of any ingress shows the whole host: both ingress processes' and the routers' counts
        # (a router counts a request just after its answer leaves, so give the last one a moment).
        for _ in range(20):
            exposition = httpx.get(url + "/metrics").text
            served = _total(exposition, "gateway_requests_total{", 'model="gpt-4o"')
            if served == 20:
                break
            time.sleep(0.1)
        assert served == _total(exposition, "gateway_http_requests_total{", "/v1/gateway/chat") == 20
    finally:
        stop_process(up)
    assert not _pids(f"--config {config} (router|ingress|analytics|cache)")
