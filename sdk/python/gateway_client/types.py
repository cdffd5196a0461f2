"""What the gateway answers, as typed objects (built from its native API's JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def of(cls, data: dict[str, Any]) -> Usage:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class ChatResponse:
    id: str
    model: str
    provider: str
    content: str
    finish_reason: str
    usage: Usage
    latency_ms: float
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, data: dict[str, Any]) -> ChatResponse:
        return cls(data["id"], data["model"], data["provider"], data["content"], data["finish_reason"],
                   Usage.of(data["usage"]), data["latency_ms"], data.get("tool_calls") or [])


@dataclass(frozen=True)
class StreamEvent:
    """One native stream event: `start` (id, model, provider), `delta` (content), `tool_call` (index, id,
    name, arguments), `end` (finish_reason, tool_calls, usage, latency_ms, ttft_ms) or `error` (error)."""

    type: Literal["start", "delta", "tool_call", "end", "error"]
    data: dict[str, Any]

    @property
    def content(self) -> str:
        return str(self.data.get("content") or "")

    @property
    def usage(self) -> Usage | None:
        return Usage.of(self.data["usage"]) if "usage" in self.data else None


@dataclass(frozen=True)
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> Embeddings:
        ordered = sorted(data["data"], key=lambda item: item["index"])
        return cls(data["model"], [item["embedding"] for item in ordered], data["usage"]["prompt_tokens"])


@dataclass(frozen=True)
class Model:
    id: str
    owned_by: str
    created: int
