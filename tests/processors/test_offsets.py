"""Offsets are committed only past records whose effects are all on Kafka."""

from __future__ import annotations

from aiokafka import TopicPartition

from processors.offsets import OffsetTracker

TP = TopicPartition("gw.requests", 0)


def test_commit_stops_at_the_oldest_record_still_in_flight() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(TP, offset)

    tracker.done(TP, 11)
    tracker.done(TP, 12)
    assert tracker.committable() == {TP: 10}

    tracker.done(TP, 10)
    assert tracker.committable() == {TP: 13}


def test_unchanged_positions_are_not_committed_again() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 0)
    tracker.done(TP, 0)
    tracker.mark_committed(tracker.committable())

    assert tracker.committable() == {}


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 5)
    tracker.forget({TP})

    assert tracker.committable() == {}
