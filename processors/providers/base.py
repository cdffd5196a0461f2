"""What every provider adapter is: pure translations between the gateway's unified shapes and one
provider's wire format. Retries, failover and HTTP live above the adapters, never inside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

ErrorKind = Literal[
    "bad_request", "upstream_auth", "not_found", "rate_limited", "server_error", "timeout", "connection"
]


@dataclass(frozen=True)
class HttpCall:
    """One provider request, ready for the HTTP runner."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class ChatResult:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    upstream_id: str | None = None


@dataclass(frozen=True)
class ProviderError:
    """A failed call, classified once: what went wrong, whether another try may succeed."""

    kind: ErrorKind
    message: str
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "server_error", "timeout", "connection")


class ChatAdapter(Protocol):
    def build_chat(self, request: dict[str, Any], upstream_model: str, api_key: str | None) -> HttpCall: ...

    def parse_chat(self, body: dict[str, Any]) -> ChatResult: ...

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> ProviderError: ...


def kind_for_status(status: int) -> ErrorKind:
    """The one mapping from an upstream HTTP status to an error kind."""
    if status in (401, 403):
        return "upstream_auth"
    if status == 404:
        return "not_found"
    if status in (408, 409):
        return "timeout" if status == 408 else "server_error"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "bad_request"


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """`retry-after-ms` (OpenAI's) or `retry-after` in seconds; HTTP dates are ignored."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) * scale, 0.0)
        except ValueError:
            continue
    return None
