"""A stream's chunks on their way to Kafka, one record in flight at a time.

A chunk leaves at once when nothing of its stream is waiting for the broker's acknowledgement, so a
quiet gateway adds no delay to any token. While one is in flight, what the provider sends meanwhile is
held and merged (text appended, tool-call pieces kept in order, the finish reason last) and leaves as
one record the moment the acknowledgement comes. So under load the records per stream fall to what
Kafka carries, instead of one record per token piling up behind each other. A record that leaves
mid-stream is written to the broker before the stream's reader goes on through the rest of a burst of
tokens; the last chunk (the one with the finish reason) and whatever is held when the answer ends leave
at once. The sequence numbers are this coalescer's: one per record, without gaps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[asyncio.Future[Any]]]


class ChunkCoalescer:
    def __init__(self, send: Send, after_send: Callable[[], Awaitable[None]]) -> None:
        """`after_send`: awaited after a record leaves mid-stream, before the stream's reader goes on, so that
        what carries the record to Kafka gets the event loop first (`kafka_clients.let_sender_write`)."""
        self._send = send
        self._after_send = after_send
        self.sent: list[asyncio.Future[Any]] = []  # each record's delivery, in order
        self._held: dict[str, Any] | None = None
        self._seq = 0
        self._waiting = False  # a flush is due when the record in flight is acknowledged
        self._lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    async def add(self, chunk: dict[str, Any]) -> None:
        self._hold(chunk)
        in_flight = self.sent[-1] if self.sent and not self.sent[-1].done() else None
        if chunk["finish_reason"] is not None:
            await self.flush()
        elif in_flight is None:
            await self.flush()
            await self._after_send()
        elif not self._waiting:
            self._waiting = True
            in_flight.add_done_callback(self._acknowledged)

    async def flush(self) -> None:
        """Send what is held now (a failure to enqueue is kept as a failed delivery, which ends the stream
        with an error when the reply is produced)."""
        async with self._lock:
            if self._held is None:
                return
            chunk, self._held = self._held, None
            chunk["seq"] = self._seq
            self._seq += 1
            try:
                delivery = await self._send(chunk)
            except Exception as exc:
                delivery = asyncio.get_running_loop().create_future()
                delivery.set_exception(exc)
            self.sent.append(delivery)

    def _hold(self, chunk: dict[str, Any]) -> None:
        held = self._held
        if held is None:
            self._held = {**chunk, "tool_calls": list(chunk["tool_calls"])}
            return
        held["content"] += chunk["content"]
        held["tool_calls"].extend(chunk["tool_calls"])
        held["finish_reason"] = chunk["finish_reason"] or held["finish_reason"]

    def _acknowledged(self, _: asyncio.Future[Any]) -> None:
        self._waiting = False
        if self._held is not None:
            task = asyncio.ensure_future(self.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
