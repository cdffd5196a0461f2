"""Added latency and throughput of the gateway, Kafka in the path, against the same mock called directly
and against the Kafka floor.

Starts the Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the OpenAI mock, one router and one
ingress on fresh topics; then runs wrk (closed loop) at each concurrency level against the mock
directly and through the gateway, alternating, and `../shared/kafka-floor/floor.py` (the two Kafka hops
alone, aiokafka, same broker, same connections) right after, and prints one table with the ratio
gateway / floor and the CPU each process spent per request. Needs `wrk` (Debian package).

    python -m bench.overhead [--levels 1,16,64] [--duration 10] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from bench.stack import KEY, MOCK_KEY, Stack, process_usage, running_stack

HERE = Path(__file__).resolve().parent
FLOOR = HERE.parent.parent / "shared" / "kafka-floor" / "floor.py"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}


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


def _floor(bootstrap: str, connections: int, duration: int) -> dict[str, float] | None:
    """The two Kafka hops alone at this many connections (None when ../shared/kafka-floor is not there)."""
    if not FLOOR.exists():
        return None
    done = subprocess.run([sys.executable, str(FLOOR), "--bootstrap", bootstrap, "--client", "aiokafka",
                           "--conns", str(connections), "--seconds", str(duration), "--json"],
                          check=True, capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])[0]
    return {"rps": float(row["rps"]), "p50": float(row["p50_ms"]), "p99": float(row["p99_ms"])}


def _gateway_run(url: str, headers: dict[str, str], level: int, duration: int, stack: Stack) -> dict[str, float]:
    """wrk through the gateway, with the CPU milliseconds each of its processes spent per request."""
    before = {name: process_usage(pid)[0] for name, pid in stack.pids.items()}
    run = _wrk(url, headers, level, duration, stack.workdir)
    requests = max(1.0, run["rps"] * duration)
    return {**run, **{f"cpu_{name}": (process_usage(pid)[0] - before[name]) * 1000 / requests
                      for name, pid in stack.pids.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--port", type=int, default=18088)
    parser.add_argument("--governed", action="store_true",
                        help="put the bench project under a (never reached) rate limit and budget: every request "
                             "passes the gatekeeper")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is needed (apt-get install wrk)")

    rows = []
    extra = {"limits": [{"scope": "project", "requests_per_minute": 10_000_000}],
             "budgets": [{"name": "bench", "usd": 1_000_000, "period": "month"}]} if args.governed else None
    with running_stack(args.port, args.mock_port, extra_config=extra) as stack:
        targets = {
            "direct": (stack.mock + "/chat/completions", {"Authorization": f"Bearer {MOCK_KEY}"}),
            "gateway": (stack.gateway + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}),
        }
        for url, headers in targets.values():  # warm-up: connections and lazy imports
            _wrk(url, headers, 16, 3, stack.workdir)
        bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        for level in [int(n) for n in args.levels.split(",")]:
            for rep in range(args.reps):
                direct = _wrk(*targets["direct"], level, args.duration, stack.workdir)
                gateway = _gateway_run(*targets["gateway"], level, args.duration, stack)
                rows.append((level, rep + 1, direct, gateway, _floor(bootstrap, level, args.duration)))
    _print(rows, args.duration)


def _print(rows: list[tuple[int, int, dict[str, float], dict[str, float], dict[str, float] | None]],
           duration: int) -> None:
    print(f"\nGateway overhead, Kafka in the path ({os.cpu_count()} cores; wrk -t1; {duration}s per run)\n")
    print("| conns | rep | direct rps | direct p50 | gateway rps | gateway p50 | gateway p99 | added p50 | added p99 "
          "| floor rps | floor p50 / p99 | added p50 / floor p50 | gateway / floor rps | CPU ms/req router, ingress "
          "| errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, rep, direct, gw, floor in rows:
        added_p50 = gw["p50"] - direct["p50"]
        floor_cells = (f"{floor['rps']:.0f} | {floor['p50']:.2f} / {floor['p99']:.2f} "
                       f"| {added_p50 / floor['p50']:.1f} | {gw['rps'] / floor['rps']:.2f}"
                       if floor else "- | - | - | -")
        print(f"| {level} | {rep} | {direct['rps']:.0f} | {direct['p50']:.2f} "
              f"| {gw['rps']:.0f} | {gw['p50']:.2f} | {gw['p99']:.2f} "
              f"| {added_p50:.2f} | {gw['p99'] - direct['p99']:.2f} | {floor_cells} "
              f"| {gw['cpu_router']:.2f}, {gw['cpu_ingress']:.2f} | {int(direct['errors'] + gw['errors'])} |")
    print("\nlatencies in ms; added = gateway minus direct in the same run; floor = ../shared/kafka-floor/floor.py "
          "(the two Kafka hops alone, aiokafka) on the same broker right after" +
          ("" if FLOOR.exists() else f" — not run: {FLOOR} is not there"))


if __name__ == "__main__":
    main()
