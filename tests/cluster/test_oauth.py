"""Kafka with SASL/OAUTHBEARER: an identity provider the test runs (a token endpoint for the client credentials
grant and the JWKS of the key it signs with) and a broker that validates the tokens against that JWKS. The
gateway takes a token with its client id and secret and answers; a wrong secret is a clear start-up error."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.cluster.secured import gateway_answers, start_broker
from tests.conftest import MOCK_OPENAI_KEY, OTHER_PROJECT_KEY, write_config

CLIENT_ID, CLIENT_SECRET = "gateway", "oauth-" + uuid.uuid4().hex
KID = "test-key-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IdentityProvider:
    """RS256 tokens for the client credentials grant (HTTP Basic), and the JWKS that verifies them."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issued = 0
        numbers = self.key.public_key().public_numbers()
        self.jwks = {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                               "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                               "e": _b64(numbers.e.to_bytes(3, "big"))}]}

    def token(self, subject: str) -> str:
        now = int(time.time())
        head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
        claims = _b64(json.dumps({"sub": subject, "iat": now, "exp": now + 300, "scope": "kafka"}).encode())
        signature = self.key.sign(f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        self.issued += 1
        return f"{head}.{claims}.{_b64(signature)}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer(200, provider.jwks)

            def do_POST(self) -> None:
                form = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("authorization") != f"Basic {basic}" or "grant_type=client_credentials" not in form:
                    self._answer(401, {"error": "invalid_client"})
                    return
                self._answer(200, {"access_token": provider.token(CLIENT_ID), "token_type": "Bearer",
                                   "expires_in": 300})

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def identity() -> Iterator[tuple[IdentityProvider, str]]:
    provider = IdentityProvider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), provider.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield provider, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def oauth_broker(identity: tuple[IdentityProvider, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One node: clients on an OAUTHBEARER listener whose tokens are checked against the JWKS; the node talks to
    itself on a plaintext listener."""
    _, url = identity
    bootstrap, node = start_broker(tmp_path_factory.mktemp("oauth"), "SASL_PLAINTEXT", [
        "sasl.enabled.mechanisms=OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        f"listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url={url}/jwks"],
        internal=True, jvm=(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={url}/jwks",))
    yield bootstrap
    node.terminate()
    node.wait(30)


def _env(tmp_path: Path, openai_mock: str, token_url: str, bootstrap: str, secret: str) -> dict[str, str]:
    config = write_config(tmp_path / "gateway.yaml", openai_mock)
    raw = yaml.safe_load(config.read_text())
    raw["kafka"] = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
                    "oauth_token_url": token_url, "oauth_client_id_env": "TEST_OAUTH_ID",
                    "oauth_client_secret_env": "TEST_OAUTH_SECRET"}
    config.write_text(yaml.safe_dump(raw))
    return {**os.environ, "GATEWAY_CONFIG": str(config), "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "GATEWAY_TOPIC_PREFIX": f"oauth-{uuid.uuid4().hex[:6]}.", "TEST_OAUTH_ID": CLIENT_ID,
            "TEST_OAUTH_SECRET": secret, "TEST_OPENAI_KEY": MOCK_OPENAI_KEY,
            "TEST_OTHER_PROJECT_KEY": OTHER_PROJECT_KEY}


def test_the_gateway_answers_over_oauthbearer(identity: tuple[IdentityProvider, str], oauth_broker: str,
                                              openai_mock: str, tmp_path: Path, logs: Path) -> None:
    provider, url = identity
    env = _env(tmp_path, openai_mock, url + "/token", oauth_broker, CLIENT_SECRET)
    answer = gateway_answers(env, logs / "oauth.log", "over OAuth")

    assert answer.status_code == 200 and answer.json()["content"].endswith("over OAuth")
    assert provider.issued >= 2  # a token per process (and per topic set-up), shared by its clients
    assert CLIENT_SECRET not in (logs / "oauth.log").read_text()


def test_a_wrong_client_secret_is_a_clear_start_up_error(identity: tuple[IdentityProvider, str], oauth_broker: str,
                                                         openai_mock: str, tmp_path: Path) -> None:
    _, url = identity
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "infra.cli", "topics"], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, openai_mock, url + "/token", oauth_broker, "not-the-secret"))

    assert run.returncode != 0 and time.monotonic() - started < 60
    assert "cannot connect to Kafka" in run.stderr and "401" in run.stderr and "TEST_OAUTH_SECRET" in run.stderr
