"""Which offset of each partition may be committed while many records are processed at once.

At-least-once: an offset is committed only when it and every offset before it are done, so a crash
re-delivers exactly the records whose effects may be missing.
"""

from __future__ import annotations

from aiokafka import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._in_flight: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._in_flight.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        pending = self._in_flight.get(tp)
        if pending is not None:
            pending.discard(offset)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop partitions this worker no longer owns (after a rebalance)."""
        for tp in partitions:
            self._in_flight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def committable(self) -> dict[TopicPartition, int]:
        """Positions that moved since the last call: the lowest offset still in flight, else the next one."""
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self._next.items():
            pending = self._in_flight.get(tp)
            position = min(pending) if pending else nxt
            if self._committed.get(tp) != position:
                out[tp] = position
        return out

    def committed(self, tp: TopicPartition) -> int | None:
        return self._committed.get(tp)

    def mark_committed(self, positions: dict[TopicPartition, int]) -> None:
        self._committed.update(positions)
