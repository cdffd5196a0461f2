"""Added latency and throughput of the gateway, Kafka in the path, against the same mock called directly
and against the Kafka floor.

Starts the Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the OpenAI mock, one router and one
ingress on fresh topics; then runs wrk (closed loop) at each concurrency level against the mock
directly, through the gateway and through its ceiling (`bench/ceiling.py`: the same parts, none of the
gateway's code), and `../shared/kafka-floor/floor.py` (the two Kafka hops alone, aiokafka, same broker,
same connections) right after, and prints one table with the CPU each process spent per request. Needs
`wrk` (Debian package).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import running_ceiling
from bench.stack import KEY, MOCK_KEY, machine_cpu, machine_since, process_usage, running_stack

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


def _measured(url: str, headers: dict[str, str], level: int, duration: int, workdir: Path,
              pids: dict[str, int]) -> dict[str, Any]:
    """wrk against one path, with the CPU milliseconds per request each process in `pids` spent and the whole
    machine spent (every process on it and the kernel), and the shares of the cores' time left idle and taken
    by the hypervisor."""
    before = {name: process_usage(pid)[0] for name, pid in pids.items()}
    machine_before = machine_cpu()
    run = _wrk(url, headers, level, duration, workdir)
    busy, idle, stolen = machine_since(machine_before)
    requests = max(1.0, run["rps"] * duration)
    cpu = {name: (process_usage(pid)[0] - before[name]) * 1000 / requests for name, pid in pids.items()}
    elapsed = max(busy + idle + stolen, 1e-9)
    return {**run, "cpu": cpu, "machine": busy * 1000 / requests, "idle": idle / elapsed, "stolen": stolen / elapsed}


@dataclass(frozen=True)
class Row:
    level: int
    rep: int
    direct: dict[str, Any]
    gateway: dict[str, Any]
    ceiling: dict[str, Any]
    floor: dict[str, float] | None


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
    with running_stack(args.port, args.mock_port, extra_config=extra) as stack, \
            running_ceiling(stack.env["KAFKA_BOOTSTRAP_SERVERS"], stack.mock, MOCK_KEY, args.port + 1,
                            stack.env) as (ceiling_url, ceiling_pids):
        direct = (stack.mock + "/chat/completions", {"Authorization": f"Bearer {MOCK_KEY}"})
        gateway = (stack.gateway + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"})
        ceiling = (ceiling_url + "/v1/chat/completions", {})
        if stack.broker_started:  # a broker costs 2-4x the CPU per request until its JIT has compiled (~1 min)
            print("bench: the broker was just started; a minute of load through the gateway first", file=sys.stderr)
            _wrk(*gateway, 64, 60, stack.workdir)
        for url, headers in (direct, gateway, ceiling):  # warm-up: connections and lazy imports
            _wrk(url, headers, 16, 3, stack.workdir)
        bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        for level in [int(n) for n in args.levels.split(",")]:
            for rep in range(args.reps):
                rows.append(Row(level, rep + 1, _measured(*direct, level, args.duration, stack.workdir, stack.shared),
                                _measured(*gateway, level, args.duration, stack.workdir,
                                          {**stack.pids, **stack.shared}),
                                _measured(*ceiling, level, args.duration, stack.workdir,
                                          {**ceiling_pids, **stack.shared}),
                                _floor(bootstrap, level, args.duration)))
    _print(rows, args.duration)


def _print(rows: list[Row], duration: int) -> None:
    print(f"\nGateway overhead, Kafka in the path ({os.cpu_count()} cores; wrk -t1; {duration}s per run)\n")
    print("| conns | rep | direct rps, p50 | gateway rps | added p50 / p99 | ceiling rps | ceiling added p50 / p99 "
          "| floor rps | floor p50 / p99 | gateway / ceiling rps | CPU ms/req router, ingress | ceiling's worker, "
          "front | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        direct, gw, ceiling, floor = row.direct, row.gateway, row.ceiling, row.floor
        floor_cells = f"{floor['rps']:.0f} | {floor['p50']:.2f} / {floor['p99']:.2f}" if floor else "- | -"
        errors = int(direct["errors"] + gw["errors"] + ceiling["errors"])
        print(f"| {row.level} | {row.rep} | {direct['rps']:.0f}, {direct['p50']:.2f} | {gw['rps']:.0f} "
              f"| {gw['p50'] - direct['p50']:.2f} / {gw['p99'] - direct['p99']:.2f} | {ceiling['rps']:.0f} "
              f"| {ceiling['p50'] - direct['p50']:.2f} / {ceiling['p99'] - direct['p99']:.2f} | {floor_cells} "
              f"| {gw['rps'] / ceiling['rps']:.2f} | {gw['cpu']['router']:.2f}, {gw['cpu']['ingress']:.2f} "
              f"| {ceiling['cpu']['ceiling worker']:.2f}, {ceiling['cpu']['ceiling front']:.2f} | {errors} |")
    print("\nlatencies in ms; added = minus direct (the mock called by wrk) in the same run; ceiling = "
          "`bench/ceiling.py`, the same two hops, uvicorn and aiohttp with none of the gateway's code; floor = "
          "../shared/kafka-floor/floor.py (the two Kafka hops alone, aiokafka) on the same broker right after" +
          ("" if FLOOR.exists() else f" — not run: {FLOOR} is not there"))
    _print_machine(rows)


def _print_machine(rows: list[Row]) -> None:
    """Where the machine's CPU went per request on each path, and the requests a second its cores allow at
    that cost: what any speed-up has to take away from."""
    cores = os.cpu_count() or 1
    print(f"\nThe machine's CPU per request, ms ({cores} cores)\n")
    print("| conns | rep | path | req/s | router / worker | ingress / front | broker | mock | machine | idle "
          f"| stolen | req/s {cores} cores allow at this cost |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for path, run, own in (("direct", row.direct, ()), ("gateway", row.gateway, ("router", "ingress")),
                               ("ceiling", row.ceiling, ("ceiling worker", "ceiling front"))):
            cpu = run["cpu"]
            cells = [f"{cpu[name]:.3f}" for name in own] or ["-", "-"]
            shared = [f"{cpu[name]:.3f}" if name in cpu else "-" for name in ("broker", "mock")]
            print(f"| {row.level} | {row.rep} | {path} | {run['rps']:.0f} | {' | '.join(cells)} | {' | '.join(shared)} "
                  f"| {run['machine']:.3f} | {run['idle']:.0%} | {run['stolen']:.0%} "
                  f"| {cores * 1000 / run['machine']:.0f} |")
    print("\nmachine: every process on the cores and the kernel's own work (wrk's included); broker: the local one "
          "(not shown when KAFKA_BOOTSTRAP_SERVERS names another); idle and stolen: shares of the cores' time, "
          "stolen being what the hypervisor gave to other guests while this one wanted to run (the processes' "
          "CPU times may count some of it; the machine's does not)")


if __name__ == "__main__":
    main()
