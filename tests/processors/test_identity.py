"""Services that sign: the documented signature, and a router without the service's secret answers none of
its requests."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from infra.config import Environment, GatewayConfig, Settings
from infra.secrets import service_signature
from processors.identity import Identities


def _settings(tmp_path: Path) -> Settings:
    config = GatewayConfig.model_validate({"keys": [{"key": "sk-12345678", "project": "p"}], "services": {
        "ledger": {"project": "ledger", "reply_topics": ["ledger.replies"], "secret_env": "LEDGER_SECRET_T"}}})
    return Settings(config, Environment(gateway_secret="s" * 32), tmp_path / "gateway.yaml")


REQUEST = {"request_id": "r-1", "project": "ledger", "key_id": "service:ledger", "reply_topic": "ledger.replies",
           "reply_partition": None}


def test_the_signature_is_the_documented_hmac() -> None:
    expected = hmac.new(b"k", b"r-1\x00ledger\x00service:ledger\x00ledger.replies", hashlib.sha256).hexdigest()
    assert service_signature("k", REQUEST) == expected


def test_a_service_is_refused_while_its_secret_is_not_set_and_answered_once_it_signs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_SECRET_T", raising=False)
    assert Identities(_settings(tmp_path)).refusal(REQUEST, service_signature("k", REQUEST)) == \
        "service 'ledger' signs its requests with the secret in LEDGER_SECRET_T, not set here"

    monkeypatch.setenv("LEDGER_SECRET_T", "k")
    identities = Identities(_settings(tmp_path))
    assert identities.refusal(REQUEST, service_signature("k", REQUEST)) is None
    assert identities.refusal({**REQUEST, "request_id": "r-2"},
                              service_signature("k", REQUEST)) is not None  # signed for another request
