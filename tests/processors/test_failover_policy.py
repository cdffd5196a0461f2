"""When to retry the same model, when to move on, and what the client is told at the end."""

from __future__ import annotations

from infra.config import Retry
from processors.failover import client_error, redact, retry_delay_s
from processors.providers.base import ProviderError

POLICY = Retry(attempts_per_model=3, backoff_ms=100, max_backoff_ms=150, max_retry_after_s=2)


def test_retryable_errors_back_off_exponentially_up_to_the_cap() -> None:
    error = ProviderError("server_error", "boom", 500)

    assert [retry_delay_s(POLICY, error, n, 60) for n in (1, 2, 3)] == [0.1, 0.15, None]


def test_a_short_retry_after_is_honoured_and_a_long_one_moves_on() -> None:
    assert retry_delay_s(POLICY, ProviderError("rate_limited", "slow down", 429, 1.5), 1, 60) == 1.5
    assert retry_delay_s(POLICY, ProviderError("rate_limited", "slow down", 429, 30), 1, 60) is None


def test_no_retry_past_the_deadline_or_on_client_errors() -> None:
    assert retry_delay_s(POLICY, ProviderError("timeout", "slow"), 1, 0.05) is None
    for kind, status in (("bad_request", 400), ("upstream_auth", 401), ("not_found", 404)):
        assert retry_delay_s(POLICY, ProviderError(kind, "no", status), 1, 60) is None  # type: ignore[arg-type]


def test_the_client_sees_its_own_mistakes_as_400_and_the_gateways_as_5xx() -> None:
    assert client_error("openai", ProviderError("bad_request", "bad temperature", 400)).status == 400
    auth = client_error("openai", ProviderError("upstream_auth", "Incorrect API key", 401))
    assert (auth.status, auth.code) == (502, "upstream_auth_failed")
    assert "openai" in auth.message
    assert client_error("openai", ProviderError("rate_limited", "slow down", 429)).status == 429
    assert client_error("openai", ProviderError("timeout", "slow")).status == 504
    assert client_error("openai", ProviderError("connection", "refused")).status == 502


def test_a_client_never_reads_the_gateways_addresses_or_keys_in_an_upstream_error() -> None:
    message = ("ClientConnectorError: Cannot connect to host 10.0.3.7:8443 ssl:default; see "
               "https://internal-llm.corp.example/v1/chat (proxy llm-proxy.corp:3128, localhost:9000). "
               "Incorrect API key provided: sk-proj-****a1b2c3d4")

    shown = redact(message, ["sk-proj-secretsecreta1b2c3d4"])

    for leak in ("10.0.3.7", "8443", "internal-llm", "corp", "3128", "9000", "a1b2c3d4", "sk-proj-"):
        assert leak not in shown
    assert shown.startswith("ClientConnectorError: Cannot connect to host <upstream>")
    assert "Incorrect API key provided" in shown
