"""A real Apache Kafka broker for one machine: jars from Maven Central (via `mvn`), KRaft combined mode
(broker and controller in one JVM) on loopback, data in a local directory. Start is idempotent."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from infra.paths import home

BROKER_PORT = 19092
CONTROLLER_PORT = 19093
_POM = Path(__file__).with_name("kafka") / "pom.xml"
_LOG4J = Path(__file__).with_name("kafka") / "log4j2.properties"


class BrokerError(RuntimeError):
    pass


def _dir() -> Path:
    path = home() / "kafka"
    path.mkdir(exist_ok=True)
    return path


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


def _properties() -> Path:
    data = _dir() / "data"
    path = _dir() / "server.properties"
    path.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}",
        f"listeners=PLAINTEXT://127.0.0.1:{BROKER_PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{BROKER_PORT}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ]))
    return path


def _java(lib: Path, main: str, *args: str) -> list[str]:
    return ["java", "-Xms256m", "-Xmx768m", f"-Dlog4j2.configurationFile={_LOG4J}",
            "-cp", f"{lib}/*", main, *args]


def _format(lib: Path, properties: Path) -> None:
    if (_dir() / "data" / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(_java(lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)),
                   check=True, stdout=subprocess.DEVNULL)


def _pid() -> int | None:
    try:
        pid = int((_dir() / "broker.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", BROKER_PORT), timeout=0.5):
            return True
    except OSError:
        return False


def start(timeout_s: float = 90.0) -> str:
    """Start the broker unless it runs already; return its bootstrap address once it accepts clients."""
    bootstrap = f"127.0.0.1:{BROKER_PORT}"
    if _answers():  # ours from an earlier start, or one the user runs on our port: use it
        return bootstrap
    if shutil.which("java") is None:
        raise BrokerError("Java 17+ is needed to run the Kafka broker")
    lib = lib_dir()
    properties = _properties()
    _format(lib, properties)
    log = open(_dir() / "broker.log", "ab")
    process = subprocess.Popen(_java(lib, "kafka.Kafka", str(properties)), stdout=log, stderr=log,
                               start_new_session=True)
    (_dir() / "broker.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"the Kafka broker exited with {process.returncode}; see {_dir() / 'broker.log'}")
        if _answers():
            return bootstrap
        time.sleep(0.2)
    raise BrokerError(f"the Kafka broker did not answer within {timeout_s:.0f}s; see {_dir() / 'broker.log'}")


def stop(timeout_s: float = 30.0) -> bool:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after `timeout_s`); False if none was running."""
    pid = _pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    (_dir() / "broker.pid").unlink(missing_ok=True)
    return True


def running() -> bool:
    return _pid() is not None and _answers()
