"""Kafka clients tuned for the hot path, and idempotent topic creation from `schemas.topics`.

Every process connects through these functions, so one size chain holds everywhere:
`ingress.max_body_bytes` < `kafka.max_message_bytes` = producers' `max_request_size` = the topics'
`max.message.bytes` <= what consumers fetch per partition.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from infra import oauth
from infra.config import Kafka
from infra.partitioner import partition
from schemas.topics import ALL, REPLIES, REQUESTS, TopicNames, sized_for

log = logging.getLogger(__name__)

DEFAULTS = Kafka()


def connection(kafka: Kafka) -> dict[str, Any]:
    """How every client of every process connects (the `kafka:` settings): the security protocol, a TLS
    context, SASL credentials read from their variables or an OAuth token source."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol.endswith("SSL"):
        password = os.environ.get(kafka.ssl_key_password_env) if kafka.ssl_key_password_env else None
        options["ssl_context"] = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
            certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
            keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None, password=password)
    if kafka.sasl_mechanism == "OAUTHBEARER":
        options.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=oauth.tokens_for(kafka))
    elif kafka.security_protocol.startswith("SASL"):
        options.update(sasl_mechanism=kafka.sasl_mechanism,
                       sasl_plain_username=os.environ.get(kafka.sasl_username_env or ""),
                       sasl_plain_password=os.environ.get(kafka.sasl_password_env or ""))
    return options


def admin(bootstrap: str, kafka: Kafka = DEFAULTS, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="gateway-admin", **connection(kafka), **options)


def producer(bootstrap: str, linger_ms: int = 0, kafka: Kafka = DEFAULTS, request_path: bool = False
             ) -> AIOKafkaProducer:
    """linger 0 (the default): a record leaves as soon as it is sent; acks=all: a record survives a broker.
    `request_path`: the producer writes requests or replies, compressed as `kafka.request_path_compression`
    says (by default not at all), the others as `kafka.compression`.

    Not idempotent: aiokafka's idempotent producer never recovers from a broker restart (it keeps its
    producer id and sequence numbers, the broker answers OutOfOrderSequenceNumber forever; aio-libs/aiokafka
    #1017, reproduced here: no send succeeded in 40 s after a 10 s outage, against 0.08 s without
    idempotence). A retried send may so be written twice; every consumer is idempotent by id instead (the
    router skips a request id it runs or answered, the ingress drops a second answer, usage is keyed by
    event id). aiokafka keeps one request in flight per broker, so retries keep a partition's order."""
    compression = kafka.request_path_compression if request_path else kafka.compression
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all", enable_idempotence=False,
        request_timeout_ms=10000, client_id="gateway", max_request_size=kafka.max_message_bytes,
        max_batch_size=1 << 20, partitioner=partition,
        compression_type=None if compression == "none" else compression, **connection(kafka),
    )


TRAILING_MS = 100  # how far a reader that may trail a busy topic (a view, a settlement) lets the broker hold it


# aiokafka's sender writes a record's produce request on the third turn of the event loop after `send` enqueued it
# (its wait wakes; it drains the batch into a request task; the task writes): tests/infra/test_kafka_clients.py.
SENDER_TURNS = 3


async def let_sender_write() -> None:
    """Give the producers' senders the loop turns they need to write what was just enqueued, for a task about
    to keep the loop busy (a stream's reader going on through tokens the provider sent at once: without this,
    the first token's record waits until the reader has parsed them all)."""
    for _ in range(SENDER_TURNS):
        await asyncio.sleep(0)


def consumer(bootstrap: str, kafka: Kafka = DEFAULTS, lag_ms: int = 0, **options: object) -> AIOKafkaConsumer:
    """lag_ms 0 (the default): the broker answers a fetch the moment one record is there. A reader that may
    trail the topic by `lag_ms` (a view, a sink) lets the broker hold each fetch that long (or until a
    megabyte is there), so it fetches at most 1000/lag_ms times a second however busy the topic: on the
    request path every fetch answered costs both sides a wake-up. A partition fetch holds the largest
    record a producer may send (a smaller one makes getmany raise RecordTooLargeError)."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_min_bytes=1 << 20 if lag_ms else 1, fetch_max_wait_ms=lag_ms or 500,
        max_partition_fetch_bytes=kafka.max_message_bytes + (1 << 20),
        fetch_max_bytes=max(52428800, 2 * kafka.max_message_bytes),
        enable_auto_commit=False, client_id="gateway", **connection(kafka), **options,  # type: ignore[arg-type]
    )


async def subscribe(consumer: AIOKafkaConsumer, topics: list[str], listener: ConsumerRebalanceListener | None = None,
                    wait_s: float = 30.0) -> None:
    """Join the consumer's group for these topics once the brokers serve all of them: a group that syncs
    while a just-created topic has no leader yet gets none of its partitions, and only looks again after
    `metadata_max_age_ms` (five minutes)."""
    deadline = time.monotonic() + wait_s
    while True:
        if set(topics) <= await consumer.topics() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    consumer.subscribe(topics, listener=listener)  # type: ignore[arg-type]


class ReplayOnFirstAssignment(ConsumerRebalanceListener):
    """A view whose state is new (or was deleted) reads its topics from their beginning, whatever its group
    had committed, and so rebuilds itself."""

    def __init__(self, consumer: AIOKafkaConsumer, view: str) -> None:
        self._consumer = consumer
        self._view = view
        self._done = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if not self._done and assigned:
            self._done = True
            await self._consumer.seek_to_beginning(*assigned)
            log.info("%s is new: replaying %d partitions from their beginning", self._view, len(assigned))


class TopicTooSmall(Exception):
    """An existing topic keeps smaller records than the gateway produces (the size chain is broken)."""


async def _check_sizes(admin: AIOKafkaAdminClient, topics: list[str], wanted: int) -> None:
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None}) for topic in topics])
    for response in responses:
        for _, _, _, topic, entries in response.resources:
            kept = next((int(value) for name, value, *_ in entries if name == "max.message.bytes"), wanted)
            if kept < wanted:
                raise TopicTooSmall(f"topic {topic} keeps records of at most {kept} bytes (max.message.bytes) but "
                                    f"kafka.max_message_bytes is {wanted}: raise the topic's max.message.bytes "
                                    "or lower kafka.max_message_bytes")


async def ensure_topics(bootstrap: str, names: TopicNames, kafka: Kafka = DEFAULTS,
                        reply_topics: dict[str, int] | None = None) -> list[str]:
    """Create the gateway's topics (and its services' reply topics, with their partition counts) that do not
    exist yet, sized for the cluster (`sized_for`); returns the names it created."""
    client = admin(bootstrap, kafka)
    await client.start()
    try:
        existing = set(await client.list_topics())
        replicas, durability = sized_for(len((await client.describe_cluster())["brokers"]))
        wanted = [
            NewTopic(names.of(spec), spec.partitions, replicas,
                     topic_configs={**spec.config, **durability, "max.message.bytes": str(kafka.max_message_bytes)})
            for spec in ALL
            if names.of(spec) not in existing
        ] + [NewTopic(topic, partitions, replicas, topic_configs={
                 **durability, "max.message.bytes": str(kafka.max_message_bytes), "retention.ms": str(3600 * 1000)})
             for topic, partitions in (reply_topics or {}).items() if topic not in existing]
        if wanted:
            try:
                await client.create_topics(wanted)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another instance")
        await _check_sizes(client, [names.of(spec) for spec in (REQUESTS, REPLIES)], kafka.max_message_bytes)
        return [t.name for t in wanted]
    finally:
        await client.close()
