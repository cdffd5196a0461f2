"""Where one request's time goes, process by process: the client, the ingress, the two Kafka hops, the router
and the provider call, timed on the clock every process shares (CLOCK_MONOTONIC).

The router and the ingress start through this module, which wraps a few of their functions with marks (the
moment a function is entered or returns, written to a file per process) and then runs the `gateway` command
as usual. One client sends requests one after another, each when the last is read (one connection, as wrk's
closed loop in `bench.overhead`: every stage is on the request's critical path); each request's marks are
lined up in the order of `ORDER`, and the table prints each stage's median and 90th percentile. A mark costs
a few microseconds: compare stages, and runs of this tool, not its total with `bench.overhead`'s.

    python -m bench.timeline [--requests 200] [--gap-ms 0] [--stream] [--tokens 8] [--delay-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.stack import KEY, MOCK_KEY, quantile, running_stack

MARKS_DIR = "BENCH_TIMELINE_DIR"

# (module, attribute path, mark on entry, mark on return), per process; None: no mark there.
PROBES: dict[str, list[tuple[str, str, str | None, str | None]]] = {
    "ingress": [
        ("ingress.hot_path", "HotPath.__call__", "ingress: HTTP request in", None),
        ("ingress.keyring", "KeyRing.caller", None, "ingress: key checked"),
        ("ingress.bodies", "parse", None, "ingress: body validated"),
        ("ingress.requests", "RequestBuilder.event", None, "ingress: request event built"),
        ("schemas.codec", "encode", None, "ingress: event encoded (Avro)"),
        ("ingress.bridge", "KafkaBridge._headers", None, "ingress: event signed"),
        ("ingress.bridge", "KafkaBridge._deliver", "ingress: answer fetched", "ingress: answer decoded"),
    ],
    "router": [
        ("processors.router", "RouterWorker._answer", "router: request fetched", None),
        ("schemas.codec", "decode", None, "router: request decoded (Avro)"),
        ("processors.identity", "Identities.refusal", None, "router: signature checked"),
        ("processors.upstream", "Upstreams.open", "router: provider called", "router: provider's head read"),
        ("processors.effects", "Effects.chunk", "router: chunk produced", None),
        ("processors.effects", "Effects._send_reply", None, "router: answer produced"),
    ],
}
_TO_THE_CALL = [
    "client: request sent", "ingress: HTTP request in", "ingress: key checked", "ingress: body validated",
    "ingress: request event built", "ingress: event encoded (Avro)", "ingress: event signed",
    "router: request fetched", "router: request decoded (Avro)", "router: signature checked",
    "router: provider called", "router: provider's head read",
]
_BACK = ["ingress: answer fetched", "ingress: answer decoded", "ingress: response head sent"]
ORDER = {"answer": [*_TO_THE_CALL, "router: answer produced", *_BACK, "client: answer read"],
         "stream": [*_TO_THE_CALL, "router: chunk produced", *_BACK, "client: first token"]}


class Marks:
    def __init__(self, path: Path) -> None:
        self._out = path.open("a", buffering=1)

    def __call__(self, label: str) -> None:
        self._out.write(f"{time.perf_counter_ns()}\t{label}\n")


def _wrap(function: Callable[..., Any], mark: Marks, entered: str | None, returned: str | None) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            if entered:
                mark(entered)
            result = await function(*args, **kwargs)
            if returned:
                mark(returned)
            return result
        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if entered:
            mark(entered)
        result = function(*args, **kwargs)
        if returned:
            mark(returned)
        return result
    return timed


def install(role: str, mark: Marks) -> None:
    """Wrap the role's probed functions (an AttributeError here: a probed function was renamed)."""
    for module_name, path, entered, returned in PROBES[role]:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, _wrap(getattr(owner, name), mark, entered, returned))
    if role == "ingress":  # the response head leaves through the ASGI send the hot path is given
        from ingress.hot_path import HotPath
        call = HotPath.__call__

        async def head_marked(self: HotPath, scope: Any, receive: Any, send: Any) -> None:
            async def marked_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    mark("ingress: response head sent")
                await send(message)
            await call(self, scope, receive, marked_send)
        HotPath.__call__ = head_marked  # type: ignore[method-assign]


async def _client(url: str, key: str, model: str, requests: int, stream: bool, gap_s: float, mark: Marks
                  ) -> list[float]:
    body = orjson.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello."}]})
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    took = []
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            mark("client: request sent")
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                if stream:
                    first = False
                    async for line in response.content:
                        if not first and b'"content":"tok' in line:
                            first = True
                            mark("client: first token")
                else:
                    await response.read()
            mark("client: answer read")
            took.append((time.perf_counter() - started) * 1000)
            if gap_s:
                await asyncio.sleep(gap_s)
    return took


def _cycles(directory: Path, order: list[str]) -> list[dict[str, int]]:
    """Each request's marks, from its `client: request sent`: each label's first mark at or after the mark of the
    label before it in `order` (a view's decode before the request's is not the request's)."""
    events = sorted((int(t), label) for path in directory.glob("*.marks")
                    for t, label in (line.rstrip("\n").split("\t") for line in path.read_text().splitlines()))
    starts = [i for i, (_, label) in enumerate(events) if label == "client: request sent"]
    cycles = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(events)
        cycle: dict[str, int] = {}
        at = events[start][0]
        for label in order:
            found = next((t for t, other in events[start:end] if other == label and t >= at), None)
            if found is not None:
                cycle[label] = found
                at = found
        cycles.append(cycle)
    return cycles


def _table(cycles: list[dict[str, int]], order: list[str], direct: list[float]) -> str:
    """µs per stage; `direct`: the same request to the mock, ms."""
    def row(label: str, us: list[float]) -> str:
        return f"| {label} | {quantile(us, 0.5):.0f} | {quantile(us, 0.9):.0f} |"

    def gaps(start: str, end: str) -> list[float]:
        return [(c[end] - c[start]) / 1000 for c in cycles if start in c and end in c]

    present = [label for label in order if sum(label in c for c in cycles) > len(cycles) // 2]
    return "\n".join(["| stage (time since the mark before it) | p50 µs | p90 µs |", "|---|---:|---:|",
                      *(row(label, gaps(before, label)) for before, label in itertools.pairwise(present)),
                      row("**end to end**", gaps(present[0], present[-1])),
                      row("the same request to the mock directly", [ms * 1000 for ms in direct])])


def _run(args: argparse.Namespace) -> None:
    upstream = f"gpt-4o-mini-tokens-{args.tokens}" + (f"-delay-{args.delay_ms}ms" if args.delay_ms else "")
    marks_dir = Path(tempfile.mkdtemp(prefix="gateway-timeline-"))
    os.environ[MARKS_DIR] = str(marks_dir)  # the router and the ingress inherit it
    models = {"bench-timeline": {"provider": "openai", "upstream_model": upstream}}
    gateway = f"http://127.0.0.1:{args.port}/v1/chat/completions"
    mock = f"http://127.0.0.1:{args.mock_port}/v1/chat/completions"
    discard = Marks(marks_dir / "discarded")
    with running_stack(args.port, args.mock_port, models, gateway_command=("-m", "bench.timeline", "--probe")):
        gap_s = args.gap_ms / 1000
        uvloop.run(_client(gateway, KEY, "bench-timeline", 30, args.stream, gap_s, discard))
        direct = uvloop.run(_client(mock, MOCK_KEY, upstream, args.requests, args.stream, gap_s, discard))
        for path in marks_dir.glob("*.marks"):
            path.write_text("")  # the warm-up's marks; the processes append after the cut
        uvloop.run(_client(gateway, KEY, "bench-timeline", args.requests, args.stream, gap_s,
                           Marks(marks_dir / "client.marks")))
    order = ORDER["stream" if args.stream else "answer"]
    kind = f"streamed, {args.tokens} tokens" + (f" {args.delay_ms} ms apart" if args.delay_ms else "") \
        if args.stream else "not streamed"
    apart = f", {args.gap_ms} ms apart" if args.gap_ms else ", each sent when the last is read"
    print(f"\nOne request's path, {args.requests} requests one after another ({kind}){apart}\n")
    print(_table(_cycles(marks_dir, order), order, direct))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":  # started by running_stack as the router or the ingress
        role = sys.argv[2]
        install(role, Marks(Path(os.environ[MARKS_DIR]) / f"{role}.marks"))
        from infra import cli
        cli.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--delay-ms", type=int, default=0, help="the mock's time between tokens")
    parser.add_argument("--gap-ms", type=int, default=0, help="the client's pause between two requests")
    parser.add_argument("--mock-port", type=int, default=18180)
    parser.add_argument("--port", type=int, default=18088)
    _run(parser.parse_args())


if __name__ == "__main__":
    main()
