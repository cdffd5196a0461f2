"""The ceiling of the gateway's parts: the same path built from the same libraries with nothing of the
gateway in it, so that a run shows how much of the gateway's cost is its own code and how much is what
uvicorn, aiokafka, aiohttp and the broker cost on this machine whatever is built on them.

Two processes, as the gateway's: a front (uvicorn with httptools and uvloop, a bare ASGI app) produces
each request's body to a request topic and answers with the record that comes back on its reply
partition; a worker reads the request topic, posts each body to the mock with aiohttp and produces the
mock's answer to the reply partition. The Kafka clients are the gateway's own (`infra.kafka_clients`:
acks=all, linger 0, the request path's compression). No validation, no Avro, no routing, no audit records,
no signatures, no views: what is left is the floor of this design in Python.

    python -m bench.ceiling --role front|worker --bootstrap HOST:PORT --topics PREFIX [--port N --mock URL]

`bench.overhead` starts both beside the gateway and prints them in its table (`running_ceiling`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from bench.stack import delete_topics, wait_http
from infra import kafka_clients

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON_HEADERS = [(b"content-type", b"application/json")]


class Front:
    """A bare ASGI app: body in, record out, the reply record back as the response."""

    def __init__(self, bootstrap: str, topics: str) -> None:
        self._bootstrap = bootstrap
        self._requests, self._replies = f"{topics}requests", f"{topics}replies"
        self._waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["method"] != "POST":  # readiness
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        key = uuid.uuid4().bytes
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        try:
            await self._producer.send_and_wait(self._requests, body, key=key, partition=0)
            reply = await waiter
        finally:
            self._waiting.pop(key, None)
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": reply})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._producer = kafka_clients.producer(self._bootstrap, request_path=True)
                self._consumer = kafka_clients.consumer(self._bootstrap)
                await self._producer.start()
                await self._consumer.start()
                self._consumer.assign([TopicPartition(self._replies, 0)])
                self._reader = asyncio.create_task(self._read())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._reader is not None:
                    self._reader.cancel()
                await self._consumer.stop()
                await self._producer.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read(self) -> None:
        while True:
            for records in (await self._consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    waiter = self._waiting.get(record.key or b"")
                    if waiter is not None and not waiter.done():
                        waiter.set_result(record.value or b"")


async def _work(bootstrap: str, topics: str, mock: str, api_key: str) -> None:
    """Each request record: one aiohttp call to the mock, its answer produced to the reply partition."""
    consumer = kafka_clients.consumer(bootstrap)
    producer = kafka_clients.producer(bootstrap, request_path=True)
    session = aiohttp.ClientSession(headers={"authorization": f"Bearer {api_key}",
                                             "content-type": "application/json"})
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(f"{topics}requests", 0)])
    running: set[asyncio.Task[None]] = set()

    async def answer(key: bytes | None, body: bytes) -> None:
        async with session.post(f"{mock}/chat/completions", data=body) as response:
            reply = await response.read()
        await (await producer.send(f"{topics}replies", reply, key=key, partition=0))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        while not stopping.is_set():
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    task = loop.create_task(answer(record.key, record.value or b""))
                    running.add(task)
                    task.add_done_callback(running.discard)
    finally:
        await consumer.stop()
        await producer.stop()
        await session.close()


async def _create_topics(bootstrap: str, topics: str) -> None:
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{topics}{name}", 1, 1) for name in ("requests", "replies")])
    finally:
        await admin.close()


@contextmanager
def running_ceiling(bootstrap: str, mock: str, api_key: str, port: int, env: dict[str, str]
                    ) -> Iterator[tuple[str, dict[str, int]]]:
    """Start the front and the worker on topics of their own; yields (the front's URL, pids by name)."""
    topics = f"ceiling-{uuid.uuid4().hex[:6]}."
    asyncio.run(_create_topics(bootstrap, topics))
    common = ["--bootstrap", bootstrap, "--topics", topics]
    worker = subprocess.Popen([sys.executable, "-m", "bench.ceiling", "--role", "worker", *common, "--mock", mock],
                              env={**env, "CEILING_API_KEY": api_key})
    front = subprocess.Popen([sys.executable, "-m", "bench.ceiling", "--role", "front", *common,
                              "--port", str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/ready")
        yield url, {"ceiling front": front.pid, "ceiling worker": worker.pid}
    finally:
        for process in (front, worker):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        asyncio.run(delete_topics(bootstrap, topics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("front", "worker"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="topic name prefix (its requests and replies)")
    parser.add_argument("--port", type=int, default=18089)
    parser.add_argument("--mock", default="http://127.0.0.1:18180/v1")
    args = parser.parse_args()
    import uvloop

    if args.role == "worker":
        uvloop.run(_work(args.bootstrap, args.topics, args.mock, os.environ.get("CEILING_API_KEY", "")))
        return
    import uvicorn

    uvicorn.run(Front(args.bootstrap, args.topics), host="127.0.0.1", port=args.port, loop="uvloop",
                http="httptools", log_config=None, access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
