"""Which fetched requests may start now. Each partition has its own bound of requests in flight and the
worker has one in all; what cannot start waits in its partition's backlog, in order, and a partition
whose backlog is full is paused (no more fetches from it) until it drains. So one tenant's burst on one
partition leaves the others' requests running, and nothing waits in an unbounded queue.

Pure bookkeeping, no Kafka: the router asks and does what it is told.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition(Generic[T]):
    running: int = 0
    backlog: deque[T] = field(default_factory=deque)
    paused: bool = False


class Admission(Generic[P, T]):
    def __init__(self, per_partition: int, total: int, backlog_limit: int) -> None:
        self._per_partition = per_partition
        self._total = total
        self._backlog_limit = backlog_limit
        self._running = 0
        self._partitions: dict[P, _Partition[T]] = {}

    @property
    def running(self) -> int:
        return self._running

    def offer(self, partition: P, item: T) -> bool:
        """True: start it now (counted as running). False: it waits in the partition's backlog."""
        state = self._partitions.setdefault(partition, _Partition())
        if not state.backlog and self._has_room(state):
            state.running += 1
            self._running += 1
            return True
        state.backlog.append(item)
        return False

    def finished(self, partition: P) -> list[tuple[P, T]]:
        """One item of `partition` is done: returns the waiting items that may start now (counted as
        running), this partition's first, then the others' in turn."""
        state = self._partitions.get(partition)
        if state is not None:
            state.running -= 1
        self._running -= 1
        order = [partition] + [p for p in self._partitions if p != partition]
        started: list[tuple[P, T]] = []
        progress = True
        while progress and self._running < self._total:
            progress = False
            for p in order:
                waiting = self._partitions.get(p)
                if waiting and waiting.backlog and self._has_room(waiting):
                    waiting.running += 1
                    self._running += 1
                    started.append((p, waiting.backlog.popleft()))
                    progress = True
        return started

    def to_pause(self) -> list[P]:
        """Partitions whose backlog is full and that are not paused yet (marked paused)."""
        out = [p for p, s in self._partitions.items() if not s.paused and len(s.backlog) >= self._backlog_limit]
        for p in out:
            self._partitions[p].paused = True
        return out

    def to_resume(self) -> list[P]:
        """Paused partitions whose backlog has room again (marked running)."""
        out = [p for p, s in self._partitions.items() if s.paused and len(s.backlog) < self._backlog_limit]
        for p in out:
            self._partitions[p].paused = False
        return out

    def drop(self, partition: P) -> list[T]:
        """The partition is no longer this worker's: forget its backlog (returned) and its pause; the
        items still running are counted until they finish."""
        state = self._partitions.get(partition)
        if state is None:
            return []
        dropped = list(state.backlog)
        state.backlog.clear()
        state.paused = False
        return dropped

    def _has_room(self, state: _Partition[T]) -> bool:
        return state.running < self._per_partition and self._running < self._total
