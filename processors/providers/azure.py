"""Azure OpenAI: OpenAI's Chat Completions on a deployment URL, with the `api-key` header (or an Entra ID
bearer token) and an `api-version` query parameter. Azure's content filter answers 400 with
`code: content_filter`, mapped to its own error kind.

Reference: https://learn.microsoft.com/azure/ai-services/openai/reference
"""

from __future__ import annotations

from typing import Any

import orjson

from processors.providers.base import HttpCall, Upstream
from processors.providers.openai import (
    chat_body,
    embeddings_body,
    images_body,
    parse_chat,
    parse_embeddings,
    parse_error,
    parse_images,
    parse_stream_event,
)

STREAM_FORMAT = "sse"

DEFAULT_API_VERSION = "2024-10-21"

__all__ = ["build_chat", "build_embeddings", "build_images", "parse_chat", "parse_embeddings", "parse_error",
           "parse_images", "parse_stream_event"]


def _call(upstream: Upstream, operation: str, body: dict[str, Any]) -> HttpCall:
    version = upstream.options.get("api_version", DEFAULT_API_VERSION)
    url = f"{upstream.base_url}/openai/deployments/{upstream.model}/{operation}?api-version={version}"
    headers = {"content-type": "application/json"}
    if upstream.api_key:
        if upstream.options.get("auth") == "entra":
            headers["authorization"] = f"Bearer {upstream.api_key}"
        else:
            headers["api-key"] = upstream.api_key
    return HttpCall("POST", url, headers, orjson.dumps(body))


def build_chat(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    return _call(upstream, "chat/completions", chat_body(request, upstream))


def build_embeddings(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    return _call(upstream, "embeddings", embeddings_body(request))


def build_images(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    return _call(upstream, "images/generations", images_body(request))
