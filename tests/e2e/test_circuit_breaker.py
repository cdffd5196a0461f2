"""A route that keeps failing is skipped: requests go straight to the fallback, with no call to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, start_gateway, write_config


@pytest.fixture(scope="module")
def breaker_gateway(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("breaker") / "gateway.yaml", openai_mock,
                          router={"circuit_failures": 3, "circuit_cooldown_s": 60})
    gateway = start_gateway(bootstrap, config, logs)
    yield gateway
    gateway.stop()


def test_an_open_circuit_skips_the_failing_route(breaker_gateway: Gateway) -> None:
    def ask() -> str:
        response = httpx.post(breaker_gateway.url + "/v1/gateway/chat", headers=breaker_gateway.headers(), timeout=30,
                              json={"model": "flaky-500", "fallback": ["gpt-4o-mini"],
                                    "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 200 and response.json()["model"] == "gpt-4o-mini"
        return response.json()["id"]

    first, second = ask(), ask()  # 2 + 2 failed calls to flaky-500: its circuit opens at the third
    third = ask()

    def calls_to_flaky(request_id: str, expect: int) -> int:
        attempts = breaker_gateway.events(breaker_gateway.topics.attempts, request_id, expect)
        return sum(1 for a in attempts if a["model"] == "flaky-500")

    assert calls_to_flaky(first, 3) == 2
    assert calls_to_flaky(second, 2) == 1  # the third failure in a row opened the circuit mid-request
    assert calls_to_flaky(third, 1) == 0  # skipped: straight to the fallback
