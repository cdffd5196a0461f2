"""The retry and failover policy as pure functions: what to do after a failed attempt, and what the
client is told when every attempt has failed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from infra.config import Retry
from processors.providers.base import ProviderError


@dataclass(frozen=True)
class ClientError:
    status: int
    type: str
    code: str
    message: str


def retry_delay_s(policy: Retry, error: ProviderError, tries_on_model: int, remaining_s: float) -> float | None:
    """Seconds to wait before trying the same model again, or None to move on to the next model.

    Only retryable errors are retried; a `retry-after` longer than the policy allows (or than the
    deadline leaves) moves on at once, since a fallback may answer sooner.
    """
    if not error.retryable or tries_on_model >= policy.attempts_per_model:
        return None
    if error.retry_after_s is not None:
        if error.retry_after_s > policy.max_retry_after_s:
            return None
        delay = error.retry_after_s
    else:
        delay = min(policy.backoff_ms * 2 ** (tries_on_model - 1), policy.max_backoff_ms) / 1000
    return delay if delay < remaining_s else None


def client_error(provider: str, error: ProviderError) -> ClientError:
    """What the caller sees once the last attempt has failed with `error`."""
    if error.kind == "bad_request":
        return ClientError(400, "invalid_request_error", "upstream_bad_request", f"{provider}: {error.message}")
    if error.kind == "invalid_request":
        return ClientError(400, "invalid_request_error", "invalid_value", error.message)
    if error.kind == "unsupported":
        return ClientError(400, "invalid_request_error", "unsupported_parameter", error.message)
    if error.kind == "content_filter":
        return ClientError(400, "invalid_request_error", "content_filter", f"{provider}: {error.message}")
    if error.kind == "upstream_auth":
        return ClientError(
            502, "api_error", "upstream_auth_failed",
            f"provider {provider} rejected the gateway's credentials (HTTP {error.status}): {error.message}",
        )
    if error.kind == "rate_limited":
        return ClientError(429, "rate_limit_error", "upstream_rate_limited", f"{provider}: {error.message}")
    if error.kind == "timeout":
        return ClientError(504, "api_error", "upstream_timeout", f"{provider}: {error.message}")
    if error.kind == "not_found":
        return ClientError(502, "api_error", "upstream_not_found", f"{provider}: {error.message}")
    return ClientError(502, "api_error", "upstream_unavailable", f"{provider}: {error.message}")


_ADDRESSES = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://[^\s'\"),]+)"              # URLs
    r"|(?:\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b)"      # IPv4 addresses, with a port
    r"|(?:\[?[0-9a-f]*:[0-9a-f:]+\]?:\d{1,5}\b)"           # IPv6 address and port
    r"|(?:\b[a-z0-9-]+(?:\.[a-z0-9-]+)+:\d{1,5}\b)"        # host:port
    r"|(?:\blocalhost(?::\d{1,5})?\b)"
    r"|(?:\bport \d{1,5}\b)",
    re.IGNORECASE,
)


_MASKED_KEY = re.compile(r"[\w-]{0,16}[*•]{3,}[\w-]{0,16}")  # how providers echo a key: sk-****abcd


def redact(message: str, secrets: Iterable[str]) -> str:
    """What a client may read of an upstream error: no address of the gateway's network (URLs, hosts,
    ports) and no piece of the gateway's own keys (a key itself, its first eight characters, or a key as
    providers echo it, masked but for a few characters). AttemptFinished keeps the full message."""
    out = _MASKED_KEY.sub("<redacted>", _ADDRESSES.sub("<upstream>", message))
    for secret in secrets:
        for fragment in (secret, secret[:8]) if len(secret) >= 12 else (secret,):
            if len(fragment) >= 8:
                out = out.replace(fragment, "<redacted>")
    return out


DEADLINE_EXCEEDED = ClientError(504, "api_error", "deadline_exceeded", "the request's deadline passed")
CLIENT_GONE = ClientError(499, "api_error", "client_disconnected", "the caller disconnected")
