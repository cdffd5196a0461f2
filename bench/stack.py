"""The stack a benchmark measures: the OpenAI mock, one router and one ingress on fresh topics of the
local broker (or KAFKA_BOOTSTRAP_SERVERS), stopped on exit, its topics deleted (a broker that keeps hundreds
of idle bench topics spends CPU on them and slows every later run)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from infra import kafka_broker, kafka_clients
from schemas.topics import TopicNames

KEY = "sk-bench-gateway"
MOCK_KEY = "sk-mock-openai"


@dataclass(frozen=True)
class Stack:
    gateway: str  # base URL of the ingress
    mock: str  # base URL of the mock, ending in /v1
    workdir: Path
    env: dict[str, str]
    pids: dict[str, int]  # the router's and the ingress's, by name
    shared: dict[str, int]  # what every path a bench compares runs through: the mock's and the local broker's pids
    broker_started: bool  # the bench started the local broker: its JIT has compiled nothing yet


def machine_cpu() -> tuple[float, float, float]:
    """(CPU seconds the machine's cores spent working so far, the kernel's work included; seconds idle; seconds
    the hypervisor gave to other guests while this one wanted to run), from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(f) for f in Path("/proc/stat").read_text().split()[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, (idle + iowait) / ticks, steal / ticks


def machine_since(before: tuple[float, float, float]) -> tuple[float, float, float]:
    """`machine_cpu()`'s three figures since `before` (an earlier reading of it)."""
    busy, idle, stolen = machine_cpu()
    return busy - before[0], idle - before[1], stolen - before[2]


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, user and system, resident MiB now) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def quantile(values: list[float], q: float) -> float:
    """The value at quantile q of a run's measurements (nan for none)."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} not ready")


@contextmanager
def running_stack(port: int, mock_port: int, models: dict[str, dict[str, str]] | None = None,
                  extra_config: dict[str, object] | None = None, gateway_command: tuple[str, ...] = ("-m", "infra.cli")
                  ) -> Iterator[Stack]:
    """`gateway_command`: how the router and the ingress are started, before their subcommand (`bench.timeline`
    starts them through its probes)."""
    broker_started = not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not kafka_broker.running()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_broker.start()
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    asyncio.run(kafka_clients.ensure_topics(bootstrap, TopicNames.for_prefix(prefix)))
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    mock = f"http://127.0.0.1:{mock_port}/v1"
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "keys": [{"key": KEY, "project": "bench"}],
        "providers": {"openai": {"kind": "openai", "base_url": mock, "api_key_env": "BENCH_OPENAI_KEY"}},
        "models": models or {},
        **(extra_config or {}),
    }))
    env = {**os.environ, "GATEWAY_CONFIG": str(config), "GATEWAY_TOPIC_PREFIX": prefix,
           "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BENCH_OPENAI_KEY": MOCK_KEY, "MOCK_OPENAI_API_KEY": MOCK_KEY}
    python = sys.executable
    with open(workdir / "processes.log", "ab") as logs:
        processes = [
            subprocess.Popen([python, "-m", "tests.mocks.openai_mock", "--port", str(mock_port)],
                             env=env, stdout=logs, stderr=logs),
            subprocess.Popen([python, *gateway_command, "router"], env=env, stdout=logs, stderr=logs),
            subprocess.Popen([python, *gateway_command, "ingress", "--port", str(port)],
                             env=env, stdout=logs, stderr=logs),
        ]
    try:
        gateway = f"http://127.0.0.1:{port}"
        wait_http(gateway + "/ready")
        broker = kafka_broker.pid() if bootstrap == kafka_broker.bootstrap() else None
        yield Stack(gateway, mock, workdir, env, {"router": processes[1].pid, "ingress": processes[2].pid},
                    {"mock": processes[0].pid, **({"broker": broker} if broker is not None else {})}, broker_started)
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        asyncio.run(delete_topics(bootstrap, prefix))


async def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        if mine := [topic for topic in await admin.list_topics() if topic.startswith(prefix)]:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
