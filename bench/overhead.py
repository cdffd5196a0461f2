"""Added latency and throughput of the gateway, Kafka in the path, against the same mock called directly.

Starts the Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the OpenAI mock, one router and one
ingress on fresh topics; then runs wrk (closed loop) at each concurrency level against the mock
directly and through the gateway, alternating, and prints one table. Needs `wrk` (Debian package).

    python -m bench.overhead [--levels 1,16,64] [--duration 10] [--reps 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

import httpx
import yaml

from infra import kafka_broker, kafka_clients
from schemas.topics import TopicNames

HERE = Path(__file__).resolve().parent
KEY = "sk-bench-gateway"
MOCK_KEY = "sk-mock-openai"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}


def _wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} not ready")


def _wrk(url: str, headers: dict[str, str], connections: int, duration: int, workdir: Path) -> dict[str, float]:
    body = workdir / "body.json"
    body.write_text(json.dumps(BODY))
    out = workdir / f"wrk-{uuid.uuid4().hex}.json"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(HERE / "chat.lua")]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    subprocess.run([*command, url], check=True, capture_output=True,
                   env={**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_OUT": str(out)})
    result = json.loads(out.read_text())
    return {
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "p50": result["p50_us"] / 1000, "p99": result["p99_us"] / 1000,
        "errors": result["errors"] + result["non2xx"],
    }


def _start(args: argparse.Namespace, env: dict[str, str], logs: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    """The mock upstream, one router and one ingress."""
    python = sys.executable
    return [
        subprocess.Popen([python, "-m", "tests.mocks.openai_mock", "--port", str(args.mock_port)],
                         env=env, stdout=logs, stderr=logs),
        subprocess.Popen([python, "-m", "infra.cli", "router"], env=env, stdout=logs, stderr=logs),
        subprocess.Popen([python, "-m", "infra.cli", "ingress", "--port", str(args.port)],
                         env=env, stdout=logs, stderr=logs),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--port", type=int, default=18088)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is needed (apt-get install wrk)")

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_broker.start()
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    asyncio.run(kafka_clients.ensure_topics(bootstrap, TopicNames.for_prefix(prefix)))
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    mock_url = f"http://127.0.0.1:{args.mock_port}/v1"
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "keys": [{"key": KEY, "project": "bench"}],
        "providers": {"openai": {"kind": "openai", "base_url": mock_url, "api_key_env": "BENCH_OPENAI_KEY"}},
    }))
    env = {**os.environ, "GATEWAY_CONFIG": str(config), "GATEWAY_TOPIC_PREFIX": prefix,
           "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BENCH_OPENAI_KEY": MOCK_KEY, "MOCK_OPENAI_API_KEY": MOCK_KEY}
    with open(workdir / "processes.log", "ab") as logs:
        processes = _start(args, env, logs)
    rows = []
    try:
        gateway = f"http://127.0.0.1:{args.port}"
        _wait_http(gateway + "/ready")
        targets = {
            "direct": (mock_url + "/chat/completions", {"Authorization": f"Bearer {MOCK_KEY}"}),
            "gateway": (gateway + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}),
        }
        for url, headers in targets.values():  # warm-up: connections and lazy imports
            _wrk(url, headers, 16, 3, workdir)
        for level in [int(n) for n in args.levels.split(",")]:
            for rep in range(args.reps):
                runs = {name: _wrk(url, headers, level, args.duration, workdir)
                        for name, (url, headers) in targets.items()}
                rows.append((level, rep + 1, runs["direct"], runs["gateway"]))
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            process.wait(30)

    print(f"\nGateway overhead, Kafka in the path ({os.cpu_count()} cores; wrk -t1; {args.duration}s per run)\n")
    print("| conns | rep | direct rps | direct p50 | direct p99 | gateway rps | gateway p50 | gateway p99 "
          "| added p50 | added p99 | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, rep, direct, gw in rows:
        print(f"| {level} | {rep} | {direct['rps']:.0f} | {direct['p50']:.2f} | {direct['p99']:.2f} "
              f"| {gw['rps']:.0f} | {gw['p50']:.2f} | {gw['p99']:.2f} "
              f"| {gw['p50'] - direct['p50']:.2f} | {gw['p99'] - direct['p99']:.2f} "
              f"| {int(direct['errors'] + gw['errors'])} |")
    print("\nlatencies in ms; added = gateway minus direct in the same run")


if __name__ == "__main__":
    main()
