"""What the secured-Kafka tests share: a single node whose client listener is secured as a test says, and
the gateway (router and ingress) started against it, answering one request."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from infra import kafka_broker
from tests.conftest import GATEWAY_KEY, free_port, stop_process, wait_for_port


def start_broker(home: Path, listener: str, settings: list[str], *format_extra: str, internal: bool = False,
                 jvm: tuple[str, ...] = ()) -> tuple[str, subprocess.Popen[bytes]]:
    """A single combined node whose client listener speaks `listener` (SASL_PLAINTEXT or SSL); `internal`: the
    node talks to itself on a plaintext listener of its own instead."""
    port, controller, inner = free_port(), free_port(), free_port()
    broker_listener = "INTERNAL" if internal else listener
    listeners = [f"{listener}://127.0.0.1:{port}", *([f"INTERNAL://127.0.0.1:{inner}"] if internal else [])]
    protocols = [f"{listener}:{listener}", *(["INTERNAL:PLAINTEXT"] if internal else []), "CONTROLLER:PLAINTEXT"]
    properties = home / "server.properties"
    properties.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners={','.join(listeners)}", "controller.listener.names=CONTROLLER",
        f"listener.security.protocol.map={','.join(protocols)}",
        f"inter.broker.listener.name={broker_listener}", *settings,
        f"log.dirs={home / 'data'}", "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=false", ""]))
    kafka_broker.format_storage(properties, uuid.uuid4().hex[:22], *format_extra)
    node = kafka_broker.run_node(properties, home / "broker.log", jvm=jvm)
    wait_for_port(port, node)  # type: ignore[arg-type]
    time.sleep(3)  # the listener is up; the controller elects itself
    return f"127.0.0.1:{port}", node


def gateway_answers(env: dict[str, str], log_path: Path, text: str) -> httpx.Response:
    """Start a router and an ingress with `env`, wait until ready, ask once, stop both."""
    port = free_port()
    with open(log_path, "ab") as log:
        router = subprocess.Popen([sys.executable, "-m", "infra.cli", "router"], env=env, stdout=log, stderr=log)
        ingress = subprocess.Popen([sys.executable, "-m", "infra.cli", "ingress", "--port", str(port)], env=env,
                                   stdout=log, stderr=log)
    try:
        wait_for_port(port, ingress)
        deadline = time.monotonic() + 60
        while httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.5)
        return httpx.post(f"http://127.0.0.1:{port}/v1/gateway/chat", timeout=30,
                          headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    finally:
        stop_process(ingress)
        stop_process(router)
