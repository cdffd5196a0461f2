"""Which partition of the replies topic this ingress instance reads: claimed, not hand-numbered.

A lease on the compacted `reply-leases` topic (a view of the log, `infra/log_view.py`), keyed by
partition. The last claim of a partition wins, which is also what compaction keeps, so every instance
(and every replay) agrees on the holder. To claim, an instance reads the topic to its end, takes the
first partition that is free (never claimed, released by a tombstone, expired, or held under its own
instance id: a restart takes its old partition back), writes its claim, and watches for `settle_s`:
if another claim of the same partition comes after its own, it lost the race and tries the next one.
While it lives it renews the lease every `lease_s / 3`; a clean stop writes a tombstone. An instance
that finds its partition claimed by another (it stalled past its lease) is told so (`on_lost`).

Expiry compares wall clocks: hosts sharing a cluster need NTP (a skew is added to the lease, not
subtracted from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.config import Settings
from infra.log_view import Change, LogView
from schemas.topics import REPLIES

log = logging.getLogger("gateway.ingress")
EVENT = "ReplyPartitionClaimed"


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_at_ms: int
    offset: int


def fold_leases(leases: dict[int, Lease], change: Change) -> None:
    """The last claim of a partition holds it; a tombstone frees it."""
    partition = int(change.key)
    if change.record is None:
        leases.pop(partition, None)
    else:
        leases[partition] = Lease(change.record["owner"], change.record["expires_at_ms"], change.offset)


def free_partition(leases: dict[int, Lease], owner: str, partitions: int, now_ms: int, skip: set[int]) -> int | None:
    """This owner's own partition if it holds one, else the lowest free one, else None."""
    for partition, lease in sorted(leases.items()):
        if lease.owner == owner and partition not in skip:
            return partition
    for partition in range(partitions):
        lease = leases.get(partition)
        if partition not in skip and (lease is None or lease.expires_at_ms <= now_ms):
            return partition
    return None


class NoFreePartition(RuntimeError):
    pass


class ReplyLease:
    def __init__(self, settings: Settings, owner: str, lease_s: float = 10.0, settle_s: float = 0.3) -> None:
        self.owner = owner
        self.partition: int | None = None
        self.on_lost: Callable[[], None] = lambda: None
        self._lease_ms = int(lease_s * 1000)
        self._settle_s = settle_s
        self._view: LogView[dict[int, Lease]] = LogView(settings.bootstrap_servers, settings.topics.reply_leases,
                                                        fold_leases, {}, settings.config.kafka)
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> int:
        await self._view.start()
        lost_races: set[int] = set()
        while True:
            await self._view.sync()
            partition = free_partition(self._view.state, self.owner, REPLIES.partitions, _now_ms(), lost_races)
            if partition is None:
                raise NoFreePartition(f"all {REPLIES.partitions} reply partitions are held by live instances; "
                                      "add partitions to the replies topic or stop an instance")
            await self._claim(partition)
            await asyncio.sleep(self._settle_s)
            await self._view.sync()
            holder = self._view.state.get(partition)
            if holder is not None and holder.owner == self.owner:
                self.partition = partition
                self._renewer = asyncio.create_task(self._renew())
                log.info("ingress %s holds reply partition %d", self.owner, partition)
                return partition
            log.info("ingress %s lost the race for reply partition %d; trying another", self.owner, partition)
            lost_races.add(partition)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.partition is not None and self.holds():
            with contextlib.suppress(Exception):
                await self._view.publish(str(self.partition).encode(), None, None)
        await self._view.stop()

    def holds(self) -> bool:
        holder = self._view.state.get(self.partition) if self.partition is not None else None
        return holder is not None and holder.owner == self.owner

    async def _claim(self, partition: int) -> None:
        now = _now_ms()
        await self._view.publish(str(partition).encode(), EVENT, {
            "partition": partition, "owner": self.owner, "claimed_at_ms": now, "expires_at_ms": now + self._lease_ms})

    async def _renew(self) -> None:
        assert self.partition is not None
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if not self.holds():
                log.critical("ingress %s lost reply partition %d to %s", self.owner, self.partition,
                             self._view.state.get(self.partition))
                self.on_lost()
                return
            try:
                await self._claim(self.partition)
            except Exception as exc:  # Kafka away for a moment: the lease outlives a few missed renewals
                log.warning("renewing the lease of reply partition %d failed: %r", self.partition, exc)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
