"""A stream's chunks: at once when nothing is in flight, merged while one is, the last one at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processors.chunks import ChunkCoalescer


def piece(text: str, finish: str | None = None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"request_id": "r1", "run_id": "run", "content": text, "tool_calls": calls or [],
            "finish_reason": finish}


class Broker:
    """Records what was sent; each send's acknowledgement is released by the test."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.acks: list[asyncio.Future[Any]] = []
        self.reader_paused: list[int] = []  # how many records had been sent each time the reader let go

    async def after_send(self) -> None:
        self.reader_paused.append(len(self.records))

    async def send(self, chunk: dict[str, Any]) -> asyncio.Future[Any]:
        self.records.append(dict(chunk))
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


def test_chunks_leave_at_once_when_nothing_is_in_flight_and_merge_while_one_is() -> None:
    asyncio.run(_merging())


async def _merging() -> None:
    broker = Broker()
    chunks = ChunkCoalescer(broker.send, broker.after_send)
    await chunks.add(piece("Hel"))
    assert [r["content"] for r in broker.records] == ["Hel"]  # no delay for the first token
    for text in ("lo", ", ", "wor"):
        await chunks.add(piece(text, calls=[{"index": 0, "arguments": text}]))
    assert len(broker.records) == 1  # held while the first is in flight
    broker.acks[0].set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert broker.records[1]["content"] == "lo, wor" and broker.records[1]["seq"] == 1
    assert [c["arguments"] for c in broker.records[1]["tool_calls"]] == ["lo", ", ", "wor"]
    await chunks.add(piece("ld", finish="stop"))  # the last leaves at once, though one is in flight
    assert [(r["seq"], r["content"], r["finish_reason"]) for r in broker.records] == [
        (0, "Hel", None), (1, "lo, wor", None), (2, "ld", "stop")]
    assert chunks.sent == broker.acks
    # The reader let the record's carrier have the loop after the first record only: the merged one left from
    # the acknowledgement's callback, the last one is followed by the reply.
    assert broker.reader_paused == [1]


def test_what_is_held_when_the_answer_ends_is_flushed_and_a_failed_send_is_a_failed_delivery() -> None:
    asyncio.run(_ending())


async def _ending() -> None:
    broker = Broker()
    chunks = ChunkCoalescer(broker.send, broker.after_send)
    await chunks.add(piece("a"))
    await chunks.add(piece("b"))
    await chunks.flush()
    assert [r["content"] for r in broker.records] == ["a", "b"]

    async def refuse(_: dict[str, Any]) -> asyncio.Future[Any]:
        raise RuntimeError("record too large")

    failing = ChunkCoalescer(refuse, broker.after_send)
    await failing.add(piece("x"))
    with pytest.raises(RuntimeError, match="too large"):
        await failing.sent[0]
