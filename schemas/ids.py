"""Identifiers the gateway gives what its events are about (requests, attempts, processing runs): 128 random
bits as 32 hex digits, opaque strings to every reader.

Not `uuid.uuid4()`, whose UUID object costs more than the random bytes: at one connection (`bench.timeline`)
building the request event took 111 -> 91 and 81 -> 78 µs in the ingress, and recording an attempt 83 -> 75
and 72 -> 67 µs in the router, in two pairs (bench/results/timeline-20261201.md)."""

from __future__ import annotations

import os


def random_id() -> str:
    return os.urandom(16).hex()
