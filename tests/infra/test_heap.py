"""The collector set for serving (infra/heap.py): the start-up heap is frozen out of the collector's sight and
the young generation collects every 10,000 allocations, while cycles made afterwards are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infra import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_serving_freezes_what_exists_and_still_collects_new_cycles(restored_collector: None) -> None:
    kept = [_Node() for _ in range(1000)]
    heap.serving()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == heap.THRESHOLDS

    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
