"""How fast the local model generates, by llama.cpp thread count, on an idle machine and with busy cores:
the server starts as `make run` starts it (`infra.local_model.start`), streams a few 128-token answers, and
the table prints, for each answer, its tokens a second and its longest silence (before the first token or
between two). `--busy N` runs N processes that spin on a core each while it generates, the way the broker and
the gateway's processes share the cores with it in `make run` and in the tests.

    python -m bench.local_model [--threads 1,2] [--busy 0,2] [--answers 4]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator

from infra import local_model

PORT = local_model.PORT + 17


@contextlib.contextmanager
def _busy_cores(count: int) -> Iterator[None]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _stream_one(prompt: str) -> tuple[float, float]:
    """Tokens a second and the longest gap between two tokens (ms) of one streamed answer."""
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
    body = {"model": local_model.ALIAS, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 128, "stream": True}
    started = last = time.monotonic()
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    tokens, longest_gap = 0, 0.0
    for line in connection.getresponse():
        if line.startswith(b"data: {"):
            now = time.monotonic()
            longest_gap, last = max(longest_gap, now - last), now
            tokens += 1
    connection.close()
    return tokens / (time.monotonic() - started), longest_gap * 1000


def measure(threads: int, busy: int, answers: int) -> list[tuple[float, float]]:
    server = local_model.start(PORT, threads=threads)
    try:
        with _busy_cores(busy):
            return [_stream_one(f"Write a long story about cat number {n}.") for n in range(answers)]
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--busy", default="0,2")
    parser.add_argument("--answers", type=int, default=4)
    args = parser.parse_args()
    print("| threads | busy cores | tokens/s per answer | longest gap ms per answer |")
    print("|---:|---:|---|---|")
    for busy in (int(b) for b in args.busy.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            runs = measure(threads, busy, args.answers)
            rates = ", ".join(f"{rate:.0f}" for rate, _ in runs)
            gaps = ", ".join(f"{gap:.0f}" for _, gap in runs)
            print(f"| {threads} | {busy} | {rates} | {gaps} |", flush=True)


if __name__ == "__main__":
    main()
