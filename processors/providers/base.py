"""What every provider adapter is: pure translations between the gateway's unified shapes and one
provider's wire format. Retries, failover and HTTP live above the adapters, never inside them.

The unified request is the RequestReceived record (schemas/avro/request_received.avsc): OpenAI's
Chat Completions vocabulary, with tools as JSON-schema text and tool-call arguments as JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

ErrorKind = Literal[
    "bad_request", "invalid_request", "unsupported", "content_filter", "upstream_auth", "not_found", "rate_limited",
    "server_error", "timeout", "connection", "cancelled",
]


@dataclass(frozen=True)
class Upstream:
    """Where one call goes: the configured provider, the model as that provider names it, and its key."""

    provider: str
    base_url: str
    model: str
    api_key: str | None = None
    capabilities: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpCall:
    """One provider request, ready for the HTTP runner (the body already serialized: it may be signed)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ChatResult:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: tuple[dict[str, str], ...] = ()
    upstream_id: str | None = None
    cache_write_tokens: int = 0  # of prompt_tokens, written to the provider's prompt cache (Anthropic)


@dataclass(frozen=True)
class EmbeddingsResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class ImagesResult:
    created: int
    images: list[dict[str, str | None]]  # url, b64_json, revised_prompt


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


DONE = "[DONE]"  # the SSE reader's name for OpenAI's `data: [DONE]`, the end of an OpenAI-format stream


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed answer: text and/or tool-call fragments (index, id, name, arguments)."""

    content: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass
class StreamState:
    """What a provider's stream has said so far besides the deltas: usage, finish reason, and which
    provider block is which tool call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    finish_reason: str | None = None
    tool_index: dict[Any, int] = field(default_factory=dict)
    ended: bool = False  # the provider's terminal event came: a stream that stops before it was cut

    def tool_call_index(self, key: Any) -> int:
        return self.tool_index.setdefault(key, len(self.tool_index))


class StreamFailed(Exception):
    """The provider reported an error inside its stream."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message)
        self.error = error


class Unsupported(Exception):
    """The request uses something this provider cannot honour; raised by build_chat, before any call."""

    def __init__(self, provider: str, field: str, why: str = "") -> None:
        super().__init__(f"provider {provider} cannot honour '{field}'" + (f": {why}" if why else ""))
        self.field = field


class InvalidRequest(Exception):
    """The request is malformed for this provider (it parses what others pass through); names the field."""

    def __init__(self, provider: str, field: str, why: str) -> None:
        super().__init__(f"invalid value for '{field}': {why} (provider {provider} parses it)")
        self.field = field


def check_tool_arguments(request: dict[str, Any], provider: str) -> None:
    """Providers that take tool-call arguments as JSON objects (Anthropic, Gemini, Bedrock) need valid JSON."""
    for i, message in enumerate(request.get("messages") or ()):
        for j, call in enumerate(message.get("tool_calls") or ()):
            try:
                value = orjson.loads(call["arguments"] or "{}")
            except orjson.JSONDecodeError:
                value = None
            if not isinstance(value, dict):
                raise InvalidRequest(provider, f"messages[{i}].tool_calls[{j}].function.arguments",
                                     "must be a JSON object in text")


class ChatAdapter(Protocol):
    """Every adapter translates chat and errors; those that offer them also have `build_embeddings` /
    `parse_embeddings` and `build_images` / `parse_images` (the router asks with getattr)."""

    def build_chat(self, request: dict[str, Any], upstream: Upstream) -> HttpCall: ...

    def parse_chat(self, body: dict[str, Any]) -> ChatResult: ...

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> ProviderError: ...


def kind_for_status(status: int) -> ErrorKind:
    """The one mapping from an upstream HTTP status to an error kind."""
    if status in (401, 403):
        return "upstream_auth"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status in (409, 429):
        return "server_error" if status == 409 else "rate_limited"
    if status >= 500:
        return "server_error"
    return "bad_request"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
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


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL, else None."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, _, data = url.partition(";base64,")
    return head[5:] or "application/octet-stream", data


def inline_parts(message: dict[str, Any], provider: str) -> list[tuple[str, str, str]]:
    """A message's parts for providers that take images inline only: ("text", text, "") or
    ("image", media type, base64 data); an image given by http(s) URL cannot be honoured."""
    out = []
    for part in message.get("parts") or ():
        if part["type"] == "text":
            out.append(("text", part["text"] or "", ""))
            continue
        inline = data_url(part["image_url"])
        if inline is None:
            raise Unsupported(provider, "messages.content.image_url", "this provider takes images as data: URLs")
        out.append(("image", *inline))
    return out


def text_of(message: dict[str, Any]) -> str:
    """A message's text, from its plain content or its text parts."""
    if message.get("content") is not None:
        return message["content"]
    return "".join(p["text"] or "" for p in message.get("parts") or () if p["type"] == "text")


def refuse_unless_supported(request: dict[str, Any], provider: str, *, seed: bool, parallel_tool_calls: bool,
                            strict_tools: bool) -> None:
    """Raise Unsupported for OpenAI parameters that change the answer and this provider has no field for."""
    if not seed and request.get("seed") is not None:
        raise Unsupported(provider, "seed")
    if not parallel_tool_calls and request.get("parallel_tool_calls") is False:
        raise Unsupported(provider, "parallel_tool_calls")
    if not strict_tools and any(t.get("strict") for t in request.get("tools") or ()):
        raise Unsupported(provider, "tools.function.strict")
