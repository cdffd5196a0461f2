"""What a Kafka round trip costs when the broker has been idle: one producer with the gateway's request-path
settings (`infra.kafka_clients.producer`: acks=all, linger 0) sends a small record and waits for the broker's
acknowledgement, then pauses before the next; the table prints the acknowledgement's median for each pause,
and for a 5 ms pause while a second producer keeps the broker busy (a record every 0.2 ms to another topic).

At one connection the gateway's hops come after such pauses (the provider call, the caller's turn-around),
while `../shared/kafka-floor/floor.py` sends each record the moment the last came back.

    python -m bench.broker_wakeup [--sends 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from infra import kafka_broker, kafka_clients

PAUSES_MS = (0, 0.5, 1, 2, 5, 20)
PAYLOAD = b"x" * 300


async def _acks(producer: AIOKafkaProducer, topic: str, sends: int, pause_s: float) -> float:
    """Median acknowledgement in ms (the first tenth of the sends is a warm-up)."""
    took = []
    for _ in range(sends):
        started = time.perf_counter()
        await (await producer.send(topic, PAYLOAD, partition=0))
        took.append((time.perf_counter() - started) * 1000)
        if pause_s:
            await asyncio.sleep(pause_s)
    return statistics.median(took[sends // 10:])


async def _busy(producer: AIOKafkaProducer, topic: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await (await producer.send(topic, b"y", partition=0))
        await asyncio.sleep(0.0002)


async def _measure(bootstrap: str, sends: int) -> list[tuple[str, float]]:
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    topic = f"bench-wakeup-{uuid.uuid4().hex[:6]}"
    await admin.create_topics([NewTopic(topic, 1, 1), NewTopic(topic + "-busy", 1, 1)])
    producer, other = (kafka_clients.producer(bootstrap, request_path=True) for _ in range(2))
    await producer.start()
    await other.start()
    try:
        await _acks(producer, topic, sends, 0)  # connections and the broker's JIT warm
        rows = [(f"{pause:g} ms pause", await _acks(producer, topic, sends, pause / 1000)) for pause in PAUSES_MS]
        stop = asyncio.Event()
        busy = asyncio.create_task(_busy(other, topic + "-busy", stop))
        rows.append(("5 ms pause, the broker busy meanwhile", await _acks(producer, topic, sends, 0.005)))
        stop.set()
        await busy
        return rows
    finally:
        await producer.stop()
        await other.stop()
        await admin.delete_topics([topic, topic + "-busy"])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=300)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_broker.start()
    rows = uvloop.run(_measure(bootstrap, args.sends))
    print(f"\nA produce's acknowledgement after the broker was idle ({args.sends} sends a row)\n")
    print("| before each send | ack p50 ms |\n|---|---:|")
    for label, ack in rows:
        print(f"| {label} | {ack:.3f} |")


if __name__ == "__main__":
    main()
