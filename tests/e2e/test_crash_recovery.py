"""Nothing accepted is lost: the router dies with requests in flight, comes back, and every request is answered."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import Gateway


def test_killing_the_router_mid_flight_loses_no_request(gateway: Gateway) -> None:
    def ask(i: int) -> httpx.Response:
        return httpx.post(
            gateway.url + "/v1/gateway/chat", timeout=60,
            headers={**gateway.headers(), "x-gateway-timeout-ms": "40000"},
            json={"model": "slowish", "messages": [{"role": "user", "content": f"request {i}"}]},
        )

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(ask, i) for i in range(20)]
        time.sleep(0.7)  # all accepted and in the router's hands, none answered (the upstream takes 1.5 s)
        assert gateway.router is not None
        gateway.router.send_signal(signal.SIGKILL)
        gateway.router.wait()
        gateway.start_router()
        responses = [f.result() for f in futures]

    assert [r.status_code for r in responses] == [200] * 20
    for i, response in enumerate(responses):
        assert response.json()["content"] == f"Hello from the mock! You said: request {i}"
    # Handled twice (before and after the crash), a request's usage events share one event id,
    # so analytics counts each request once.
    for response in responses:
        request_id = response.json()["id"]
        usage = gateway.events(gateway.topics.usage, request_id)
        assert usage and {u["event_id"] for u in usage} == {request_id}
