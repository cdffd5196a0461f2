"""On SIGTERM the ingress stops accepting, answers what it accepted, then exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import Gateway, free_port, wait_for_port


def test_sigterm_lets_accepted_requests_finish(gateway: Gateway) -> None:
    port = free_port()
    with open(gateway.logs / "ingress-shutdown.log", "ab") as log:
        ingress = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "ingress", "--port", str(port), "--reply-partition", "1"],
            env=gateway.env, stdout=log, stderr=log,
        )
    wait_for_port(port, ingress)
    url = f"http://127.0.0.1:{port}"
    while httpx.get(url + "/health").status_code != 200:
        time.sleep(0.1)

    with ThreadPoolExecutor(1) as pool:
        accepted = pool.submit(httpx.post, url + "/v1/gateway/chat", headers=gateway.headers(), timeout=30,
                               json={"model": "slowish", "messages": [{"role": "user", "content": "finish me"}]})
        time.sleep(0.5)  # accepted, waiting on the upstream's 1.5 s
        ingress.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
        response = accepted.result()

    assert response.status_code == 200
    assert response.json()["content"] == "Hello from the mock! You said: finish me"
    assert ingress.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
