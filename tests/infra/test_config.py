"""A bad configuration stops the gateway at start with a message naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, load

GOOD = """
keys:
  - {key: sk-local-dev-key, project: default}
providers:
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_the_shipped_configuration_is_valid() -> None:
    settings = load(Path(__file__).resolve().parents[2] / "gateway.yaml")

    assert "local" in settings.config.providers


@pytest.mark.parametrize(("text", "named"), [
    (GOOD.replace("https://api.openai.com/v1", "api.openai.com"), "providers.openai.base_url"),
    (GOOD.replace("kind: openai,", "kind: openia,"), "providers.openai.kind"),
    (GOOD + "models:\n  gpt-4o: {provider: nowhere}\n", "models.gpt-4o.provider"),
    (GOOD + "retry: {attempts_per_model: 0}\n", "retry.attempts_per_model"),
    (GOOD + "ingres: {}\n", "ingres"),
    ("keys: []\n", "keys"),
    ("keys:\n  - {project: p}\n", "keys.0"),
    (GOOD + "ingress: {max_body_bytes: 2000000}\nkafka: {max_message_bytes: 2000000}\n", "ingress.max_body_bytes"),
    (GOOD + "kafka: {compression: brotli}\n", "kafka.compression"),
    (GOOD + "kafka: {request_path_compression: snappy}\n", "kafka.request_path_compression"),
    (GOOD + "services:\n  billing: {project: billing, reply_topics: []}\n", "services.billing.reply_topics"),
    (GOOD + "providers:\n  x: {kind: openai, base_url: 'http://x', idle_timeout_s: 0}\n", "idle_timeout_s"),
])
def test_an_invalid_field_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text))

    assert named in str(raised.value)
    assert str(tmp_path) in str(raised.value)


def test_unparseable_yaml_and_a_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path, "keys: [unclosed"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "absent.yaml")


def test_a_provider_whose_key_variable_is_unset_is_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not load(write(tmp_path, GOOD)).config.providers["openai"].enabled

    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    assert load(write(tmp_path, GOOD)).config.providers["openai"].enabled


def test_kafka_security_is_validated_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.config import Kafka
    from infra.kafka_clients import connection

    with pytest.raises(ValueError, match="sasl_mechanism: SASL_SSL needs one"):
        Kafka(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="sasl_password_env: the variable NO_SUCH_VARIABLE is not set"):
        Kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_username_env="HOME",
              sasl_password_env="NO_SUCH_VARIABLE")
    with pytest.raises(ValueError, match="SASL settings need security_protocol"):
        Kafka(sasl_mechanism="PLAIN")
    with pytest.raises(ValueError, match="no file"):
        Kafka(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="TLS files need security_protocol"):
        Kafka(ssl_cafile=Path(__file__))
    with pytest.raises(ValueError, match="oauth_token_url: OAUTHBEARER needs the token endpoint"):
        Kafka(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth_client_id_env="HOME",
              oauth_client_secret_env="HOME")
    with pytest.raises(ValueError, match="oauth_client_secret_env: the variable NO_SUCH_VARIABLE is not set"):
        Kafka(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth_token_url="https://idp/token",
              oauth_client_id_env="HOME", oauth_client_secret_env="NO_SUCH_VARIABLE")
    with pytest.raises(ValueError, match="OAuth settings need sasl_mechanism OAUTHBEARER"):
        Kafka(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username_env="HOME",
              sasl_password_env="HOME", oauth_token_url="https://idp/token")

    monkeypatch.setenv("KAFKA_USER", "gateway")
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret")
    secured = Kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                    sasl_username_env="KAFKA_USER", sasl_password_env="KAFKA_PASSWORD")
    assert connection(secured) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                   "sasl_plain_username": "gateway", "sasl_plain_password": "s3cret"}
    assert "s3cret" not in secured.model_dump_json()  # the configuration holds the variable's name only


def test_a_bare_yaml_off_is_the_cache_mode_off() -> None:
    import yaml

    from infra.config import Cache

    cache = Cache.model_validate(yaml.safe_load("mode: off\nmodels: {gpt-4o: off, gpt-4o-mini: semantic}"))
    assert (cache.mode, cache.mode_for("gpt-4o"), cache.mode_for("gpt-4o-mini")) == ("off", "off", "semantic")
