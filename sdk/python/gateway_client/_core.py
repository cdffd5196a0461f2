"""What the sync and async clients share: settings, request shapes, retry decisions, SSE parsing."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from gateway_client.errors import GatewayError, error_for
from gateway_client.types import StreamEvent


@dataclass(frozen=True)
class Settings:
    api_key: str
    base_url: str
    timeout: float
    max_retries: int

    @classmethod
    def of(cls, api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> Settings:
        key = api_key or os.environ.get("INFRARIX_KEY")
        if not key:
            raise GatewayError("no API key: pass api_key= or set INFRARIX_KEY")
        url = base_url or os.environ.get("INFRARIX_BASE_URL") or "http://127.0.0.1:8080"
        return cls(key, url.rstrip("/"), timeout, max_retries)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


def chat_body(params: dict[str, Any], stream: bool) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None} | {"stream": stream}


def retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def backoff_s(attempt: int, retry_after: str | None) -> float:
    """`retry-after` when the gateway gave one, else exponential with jitter."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 60.0)
        except ValueError:
            pass
    return min(0.5 * 2 ** attempt, 8.0) * (0.5 + random.random() / 2)


def failure(response: httpx.Response) -> GatewayError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body if isinstance(body, dict) else None,
                     response.headers.get("x-request-id"))


class SSEParser:
    """Lines in, native stream events out (an empty line ends an event)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, lines: Iterable[str]) -> list[StreamEvent]:
        out = []
        for line in lines:
            if line == "":
                if self._data:
                    out.append(StreamEvent(self._event or "delta", json.loads("\n".join(self._data))))  # type: ignore[arg-type]
                self._event, self._data = None, []
            elif line.startswith("event:"):
                self._event = line[6:].strip()
            elif line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
        return out
