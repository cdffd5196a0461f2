"""Added latency and throughput of the gateway, Kafka in the path, against the same mock called directly.

Starts the Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the OpenAI mock, one router and one
ingress on fresh topics; then runs wrk (closed loop) at each concurrency level against the mock
directly and through the gateway, alternating, and prints one table. Needs `wrk` (Debian package).

    python -m bench.overhead [--levels 1,16,64] [--duration 10] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from bench.stack import KEY, MOCK_KEY, running_stack

HERE = Path(__file__).resolve().parent
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
        for level in [int(n) for n in args.levels.split(",")]:
            for rep in range(args.reps):
                runs = {name: _wrk(url, headers, level, args.duration, stack.workdir)
                        for name, (url, headers) in targets.items()}
                rows.append((level, rep + 1, runs["direct"], runs["gateway"]))

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
