"""The gateway's partitioner places every key where aiokafka's (and so the Java client's) does: a request's
cancellation, or a service producing requests with another client, must land on the partition its router
reads."""

from __future__ import annotations

import os
import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from infra import partitioner


def test_murmur2_matches_aiokafka_for_every_key_length() -> None:
    for length in range(0, 70):
        for _ in range(50):
            key = os.urandom(length)
            assert partitioner.murmur2(key) == murmur2(key), key


def test_a_keyed_record_lands_where_the_default_partitioner_puts_it() -> None:
    keys = [f"gw-{os.urandom(16).hex()}".encode() for _ in range(500)] + [b"bench", b"acme", b"p", b""]
    for count in (1, 3, 6, 8, 12):
        partitions = list(range(count))
        for key in keys:
            assert partitioner.partition(key, partitions, partitions) == DefaultPartitioner()(key, partitions,
                                                                                               partitions)


def test_an_unkeyed_record_goes_to_a_partition_with_a_leader() -> None:
    random.seed(7)
    assert {partitioner.partition(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {partitioner.partition(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
