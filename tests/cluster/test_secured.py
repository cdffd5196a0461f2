"""Connecting to a secured Kafka: brokers the test configures, one with a SASL_PLAINTEXT listener and
SCRAM-SHA-256 users, one with TLS and a certificate the test makes. The gateway connects with
credentials from its variables and answers; wrong credentials or an unknown CA are a clear start-up
error, not a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.secured import gateway_answers, start_broker
from tests.conftest import MOCK_OPENAI_KEY, OTHER_PROJECT_KEY, write_config

PASSWORD = "gw-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-pw";'
    bootstrap, node = start_broker(
        tmp_path_factory.mktemp("sasl"), "SASL_PLAINTEXT",
        ["sasl.enabled.mechanisms=SCRAM-SHA-256", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
         f"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={jaas}"],
        "--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-pw]",
        "--add-scram", f"SCRAM-SHA-256=[name=gateway,password={PASSWORD}]")
    yield bootstrap
    node.terminate()
    node.wait(30)


def _certificates(home: Path) -> tuple[Path, Path, Path]:
    """A CA, a broker certificate for 127.0.0.1 signed by it (key and chain in one PEM file, as Kafka's PEM
    keystore takes them), and another CA nobody signed with."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
                    ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    pem = serialization.Encoding.PEM
    ca_key, other_key, broker_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("test CA", ca_key, "test CA", ca_key, True)
    (home / "ca.pem").write_bytes(ca.public_bytes(pem))
    other = certificate("other CA", other_key, "other CA", other_key, True)
    (home / "other-ca.pem").write_bytes(other.public_bytes(pem))
    key = broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain = certificate("127.0.0.1", broker_key, "test CA", ca_key, False).public_bytes(pem) + ca.public_bytes(pem)
    (home / "broker.pem").write_bytes(key + chain)
    return home / "ca.pem", home / "broker.pem", home / "other-ca.pem"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    home = tmp_path_factory.mktemp("tls")
    ca, keystore, other = _certificates(home)
    bootstrap, node = start_broker(home, "SSL", [
        "ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={ca}"])
    yield bootstrap, ca, other
    node.terminate()
    node.wait(30)


SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username_env": "TEST_KAFKA_USER", "sasl_password_env": "TEST_KAFKA_PASSWORD"}


def _config(tmp_path: Path, openai_mock: str, kafka: dict[str, str] = SASL) -> Path:
    config = write_config(tmp_path / "gateway.yaml", openai_mock)
    raw = yaml.safe_load(config.read_text())
    raw["kafka"] = kafka
    config.write_text(yaml.safe_dump(raw))
    return config


def _env(config: Path, bootstrap: str, password: str) -> dict[str, str]:
    return {**os.environ, "GATEWAY_CONFIG": str(config), "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "GATEWAY_TOPIC_PREFIX": f"sec-{uuid.uuid4().hex[:6]}.", "TEST_KAFKA_USER": "gateway",
            "TEST_KAFKA_PASSWORD": password, "TEST_OPENAI_KEY": MOCK_OPENAI_KEY,
            "TEST_OTHER_PROJECT_KEY": OTHER_PROJECT_KEY}


def test_the_gateway_answers_over_sasl_scram(secured_broker: str, openai_mock: str, tmp_path: Path,
                                              logs: Path) -> None:
    env = _env(_config(tmp_path, openai_mock), secured_broker, PASSWORD)
    answer = gateway_answers(env, logs / "secured.log", "over SASL")

    assert answer.status_code == 200 and answer.json()["content"].endswith("over SASL")
    assert PASSWORD not in (logs / "secured.log").read_text()  # the secret is not logged


def test_wrong_credentials_are_a_clear_start_up_error(secured_broker: str, openai_mock: str, tmp_path: Path) -> None:
    env = _env(_config(tmp_path, openai_mock), secured_broker, "not-the-password")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "infra.cli", "topics"], env=env, capture_output=True, text=True,
                         timeout=120)

    assert run.returncode != 0 and time.monotonic() - started < 60
    assert "cannot connect to Kafka" in run.stderr and "SASL_PLAINTEXT" in run.stderr


def test_tls_with_the_brokers_ca_connects_and_another_ca_is_refused(tls_broker: tuple[str, Path, Path],
                                                                    openai_mock: str, tmp_path: Path) -> None:
    bootstrap, ca, other = tls_broker
    for cafile, works in ((ca, True), (other, False)):
        config = _config(tmp_path, openai_mock, {"security_protocol": "SSL", "ssl_cafile": str(cafile)})
        run = subprocess.run([sys.executable, "-m", "infra.cli", "topics"], env=_env(config, bootstrap, PASSWORD),
                             capture_output=True, text=True, timeout=120)
        assert (run.returncode == 0) == works, run.stderr
        if not works:
            assert "cannot connect to Kafka" in run.stderr and "over SSL" in run.stderr
