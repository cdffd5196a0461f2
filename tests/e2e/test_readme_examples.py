"""The README's examples, run as printed against the gateway `make run` starts (the repository's
gateway.yaml, the default topic prefix, the real local model)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import local_model
from infra.config import LOCAL_KAFKA
from infra.paths import REPO
from tests.conftest import stop_process

README = (REPO / "README.md").read_text()


def _python_block_after(heading: str) -> str:
    section = README[README.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def make_run_router(bootstrap: str, logs: Path) -> Iterator[None]:
    """What `make run` starts for a Kafka client: the router on gateway.yaml, and the local model."""
    if bootstrap != LOCAL_KAFKA:
        pytest.skip(f"the README's example names the local broker {LOCAL_KAFKA}")
    model = None if _listening(local_model.PORT) else local_model.start()
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_CONFIG", "GATEWAY_TOPIC_PREFIX")}
    env["GATEWAY_LOG_LEVEL"] = "INFO"
    log_path = logs / "readme-router.log"
    with open(log_path, "ab") as log:
        router = subprocess.Popen([sys.executable, "-m", "infra.cli", "router"], env=env, stdout=log, stderr=log,
                                  cwd=REPO)
    deadline = time.monotonic() + 60  # started as `make run` leaves it: topics made, partitions assigned
    while "router assigned" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    yield
    stop_process(router)
    if model is not None:
        stop_process(model)


def test_the_kafka_client_example_runs_as_printed(make_run_router: None) -> None:
    example = _python_block_after("### Kafka producers as clients")

    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120, cwd=REPO)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("('ResponseCompleted', {"), result.stdout
    assert "'model': 'smollm2-135m'" in result.stdout and "'project': 'billing'" in result.stdout
