"""A real Apache Kafka on one machine: jars from Maven Central (via `mvn`), KRaft combined mode (broker and
controller in one JVM) on loopback, data in a local directory. One broker by default; `nodes=3` runs a
cluster of three combined nodes (each its own ports and data directory, one controller quorum), on which
topics get three replicas. Start is idempotent; stop and status cover every node."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from infra.paths import home

BROKER_PORT = 19092
CONTROLLER_PORT = 19093
_POM = Path(__file__).with_name("kafka") / "pom.xml"
_LOG4J = Path(__file__).with_name("kafka") / "log4j2.properties"


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Node:
    node_id: int
    broker_port: int
    controller_port: int
    dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"


def _dir() -> Path:
    path = home() / "kafka"
    path.mkdir(exist_ok=True)
    return path


def nodes(count: int = 1) -> list[Node]:
    """The single broker (19092), or the nodes of the local cluster (19110, 19120, ... with controllers
    one port above), each in its own directory."""
    if count == 1:
        return [Node(1, BROKER_PORT, CONTROLLER_PORT, _dir())]
    return [Node(i, 19100 + 10 * i, 19101 + 10 * i, _dir() / "cluster" / f"node-{i}") for i in range(1, count + 1)]


def bootstrap(count: int = 1) -> str:
    return ",".join(node.address for node in nodes(count))


def lib_dir() -> Path:
    """The broker's jars, fetched once per version of the pom (a stamp holds the pom's hash)."""
    lib = _dir() / "lib"
    stamp = lib / ".pom-sha256"
    digest = hashlib.sha256(_POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return lib
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker's jars from Maven Central")
    shutil.rmtree(lib, ignore_errors=True)
    print(f"fetching the Kafka broker's jars from Maven Central into {lib} ...", flush=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
         f"-DoutputDirectory={lib}"],
        check=True,
    )
    stamp.write_text(digest)
    return lib


def _properties(node: Node, cluster: list[Node]) -> Path:
    node.dir.mkdir(parents=True, exist_ok=True)
    replicas = min(3, len(cluster))
    path = node.dir / "server.properties"
    path.write_text("\n".join([
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        "controller.quorum.voters=" + ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster),
        f"listeners=PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.broker_port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={node.dir / 'data'}",
        "num.partitions=1",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=4",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min(2, replicas)}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min(2, replicas)}",
        f"min.insync.replicas={min(2, replicas)}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ]))
    return path


def _java(lib: Path, main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
    return ["java", "-Xms256m", "-Xmx768m", f"-Dlog4j2.configurationFile={_LOG4J}", *jvm,
            "-cp", f"{lib}/*", main, *args]


def _format(lib: Path, node: Node, properties: Path, cluster_id: str) -> None:
    if (node.dir / "data" / "meta.properties").exists():
        return
    format_storage(properties, cluster_id)


def format_storage(properties: Path, cluster_id: str, *extra: str) -> None:
    """Format a node's storage (`extra`: more StorageTool arguments, such as `--add-scram` users)."""
    subprocess.run(_java(lib_dir(), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties),
                         *extra), check=True, stdout=subprocess.DEVNULL)


def run_node(properties: Path, log: Path, jvm: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """One Kafka node of a configuration made elsewhere (a test's secured broker); `jvm`: system properties
    (`-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=...`)."""
    with open(log, "ab") as out:
        return subprocess.Popen(_java(lib_dir(), "kafka.Kafka", str(properties), jvm=jvm), stdout=out, stderr=out,
                                start_new_session=True)


def pid() -> int | None:
    """The local single-node broker's process id, when it runs (benchmarks read its CPU)."""
    return _pid(nodes()[0])


def _pid(node: Node) -> int | None:
    try:
        pid = int((node.dir / "broker.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _answers(node: Node) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", node.broker_port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id(cluster: list[Node]) -> str:
    """One id for every node of a cluster, kept beside them (a node formatted later joins the same one)."""
    stamp = cluster[0].dir.parent / "cluster-id" if len(cluster) > 1 else cluster[0].dir / "cluster-id"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        stamp.write_text(new_cluster_id())
    return stamp.read_text()


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form (16 bytes, URL-safe base64), never one starting with '-': the storage
    tool would read that as an option ('argument --cluster-id/-t: expected one argument'), one start in 64."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


def _serving(count: int) -> bool:
    """Whether the cluster's metadata lists all `count` nodes: a node opens its port before it has registered
    with the controller, and until then a client's metadata has no broker (a `make run` on a broker with many
    topics to load failed creating its topics: NodeNotReadyError)."""
    async def brokers() -> int:
        client = AIOKafkaClient(bootstrap_servers=bootstrap(count), request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return len(client.cluster.brokers())
        except KafkaError:
            return 0
        finally:
            await client.close()

    metadata_log = logging.getLogger("aiokafka.cluster")  # warns of the empty metadata this waits out
    level = metadata_log.level
    metadata_log.setLevel(logging.ERROR)
    try:
        return asyncio.run(brokers()) >= count
    finally:
        metadata_log.setLevel(level)


def start(timeout_s: float = 90.0, count: int = 1) -> str:
    """Start the broker (or the `count` nodes) unless running; return the bootstrap address once every
    node accepts clients and is in the cluster's metadata."""
    cluster = nodes(count)
    deadline = time.monotonic() + timeout_s
    if all(_answers(node) for node in cluster):  # ours from an earlier start, or one the user runs there
        while not _serving(count):
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka answers at {bootstrap(count)} but lists no broker within {timeout_s:.0f}s")
            time.sleep(0.2)
        return bootstrap(count)
    if shutil.which("java") is None:
        raise BrokerError("Java 17+ is needed to run the Kafka broker")
    lib = lib_dir()
    cluster_id = _cluster_id(cluster)
    processes = {}
    for node in cluster:
        if _answers(node):
            continue
        properties = _properties(node, cluster)
        _format(lib, node, properties, cluster_id)
        log = open(node.dir / "broker.log", "ab")
        processes[node] = subprocess.Popen(_java(lib, "kafka.Kafka", str(properties)), stdout=log, stderr=log,
                                           start_new_session=True)
        (node.dir / "broker.pid").write_text(str(processes[node].pid))
    while time.monotonic() < deadline:
        for node, process in processes.items():
            if process.poll() is not None:
                raise BrokerError(f"Kafka node {node.node_id} exited with {process.returncode}; see "
                                  f"{node.dir / 'broker.log'}")
        if all(_answers(node) for node in cluster) and _serving(count):
            return bootstrap(count)
        time.sleep(0.2)
    raise BrokerError(f"Kafka did not answer within {timeout_s:.0f}s; see the broker.log of each node")


def _alive(pid: int) -> bool:
    """Whether a process still runs (a child of ours that exited is reaped, not counted as a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_node(node: Node, timeout_s: float = 30.0, kill: bool = False) -> bool:
    """Stop one node cleanly (SIGTERM, then SIGKILL after `timeout_s`; at once with `kill`)."""
    pid = _pid(node)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    (node.dir / "broker.pid").unlink(missing_ok=True)
    return True


def stop(timeout_s: float = 30.0, count: int = 1) -> bool:
    """Stop the broker (or every node of the cluster); False if none was running."""
    stopped = [stop_node(node, timeout_s) for node in nodes(count)]
    return any(stopped)


def running(count: int = 1) -> bool:
    return all(_pid(node) is not None and _answers(node) for node in nodes(count))
