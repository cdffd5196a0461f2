"""`gateway up`: the whole local stack as supervised processes: N ingress processes sharing one port
(SO_REUSEPORT: the kernel spreads connections; each claims its own reply partition), M routers (one
consumer group; each with a stable instance id, so a restart takes its partitions back at once), and the
local model when no provider key is set. A process that dies is started again; Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("gateway.up")


def default_counts() -> tuple[int, int]:
    """Ingress and router processes for this machine: half the cores each (the broker, the mock or the
    providers' sockets and the OS take the rest), at least one of each."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2), max(1, cores // 2)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, config: Path, host: str, port: int, ingress: int, routers: int,
                 analytics_port: int | None = None, cache_port: int | None = None) -> None:
        base = [sys.executable, "-m", "infra.cli", "--config", str(config)]
        self.children = [Child(f"router-{i}", [*base, "router", "--instance-id", f"router-{i}"])
                         for i in range(routers)]
        if analytics_port is not None:  # the one process that owns the embedded analytics store
            self.children.append(Child("analytics", [*base, "analytics", "--port", str(analytics_port)]))
        if cache_port is not None:  # the one process that owns the embedded cache store
            self.children.append(Child("cache", [*base, "cache", "--port", str(cache_port)]))
        self.children += [Child(f"ingress-{i}", [*base, "ingress", "--host", host, "--port", str(port),
                                                 "--instance-id", f"ingress-{i}", "--reuse-port"])
                          for i in range(ingress)]
        self.url = f"http://{host}:{port}"
        self._stopping = False

    def start(self) -> None:
        """Start every process; from now on SIGTERM / SIGINT stop them all (even while waiting for ready)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for child in self.children:
            child.start()

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stopping:
            for child in self.children:
                if not child.alive():
                    raise SystemExit(f"gateway: {child.name} exited with {child.process and child.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise SystemExit("gateway: stopped" if self._stopping else f"gateway: not ready within {timeout_s:.0f}s")

    def watch(self) -> None:
        """Until stopped: start again what died (at most 5 times a minute per process)."""
        while not self._stopping:
            for child in self.children:
                if not child.alive() and not self._stopping:
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                    if len(child.restarts) > 5:
                        raise SystemExit(f"gateway: {child.name} keeps exiting; see its output above")
                    print(f"gateway: {child.name} exited with {child.process and child.process.returncode}; "
                          "starting it again", flush=True)
                    child.start()
            time.sleep(0.5)

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            if child.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(30)

    def _stop(self, *_: object) -> None:
        self._stopping = True
