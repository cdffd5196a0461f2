"""A ResponseCompleted event rendered in each response format the ingress speaks."""

from __future__ import annotations

import base64
import struct
from typing import Any

from ingress.bodies import EmbeddingsBody


def _tool_calls(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in reply["tool_calls"]]


def native(reply: dict[str, Any], _: object = None) -> dict[str, Any]:
    return {
        "id": reply["request_id"],
        "model": reply["model"],
        "provider": reply["provider"],
        "content": reply["content"],
        "tool_calls": _tool_calls(reply),
        "finish_reason": reply["finish_reason"],
        "usage": {
            "prompt_tokens": reply["prompt_tokens"],
            "completion_tokens": reply["completion_tokens"],
            "total_tokens": reply["total_tokens"],
            "cached_tokens": reply["cached_tokens"],
            "reasoning_tokens": reply["reasoning_tokens"],
            "cost_usd": reply["cost_usd"],
        },
        "latency_ms": reply["latency_ms"],
    }


def openai_chat(reply: dict[str, Any], _: object = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply["content"] or None, "refusal": None}
    if reply["tool_calls"]:
        message["tool_calls"] = _tool_calls(reply)
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": reply["request_id"],
        "object": "chat.completion",
        "created": reply["completed_at_ms"] // 1000,
        "model": reply["model"],
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reply["finish_reason"],
        }],
        "usage": {
            "prompt_tokens": reply["prompt_tokens"],
            "completion_tokens": reply["completion_tokens"],
            "total_tokens": reply["total_tokens"],
            "prompt_tokens_details": {"cached_tokens": reply["cached_tokens"]},
            "completion_tokens_details": {"reasoning_tokens": reply["reasoning_tokens"]},
        },
        "system_fingerprint": None,
    }


def embeddings(reply: dict[str, Any], body: EmbeddingsBody) -> dict[str, Any]:
    """OpenAI's embeddings list; base64 is the little-endian float32 bytes, as OpenAI sends it."""
    def encode(vector: list[float]) -> list[float] | str:
        if body.encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return vector

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(vector)}
                 for i, vector in enumerate(reply["embeddings"])],
        "model": reply["model"],
        "usage": {"prompt_tokens": reply["prompt_tokens"], "total_tokens": reply["prompt_tokens"]},
    }


def images(reply: dict[str, Any], _: object = None) -> dict[str, Any]:
    return {"created": reply["created"],
            "data": [{k: v for k, v in image.items() if v is not None} for image in reply["images"]]}


def gateway_headers(reply: dict[str, Any]) -> dict[str, str]:
    """What the gateway adds on every answer, whatever its format."""
    return {
        "x-request-id": reply["request_id"],
        "x-gateway-provider": reply["provider"],
        "x-gateway-target": f"{reply['provider']}/{reply['model']}",
        "x-gateway-cost-usd": f"{reply['cost_usd']:.10f}",
        "x-gateway-attempts": str(reply["attempts"]),
        **carried_headers(reply),
    }


def carried_headers(reply: dict[str, Any]) -> dict[str, str]:
    """What the reply records carried, on answers, errors and streams alike: OpenAI's
    `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` from the gatekeeper's counters (a project under
    a rate limit), `x-gateway-cache` (a request the cache was asked about), `x-gateway-route` and
    `x-gateway-strategy` (a route chose the target)."""
    out = {"x-gateway-cache": reply["cache"]} if reply.get("cache") else {}
    if reply.get("route"):
        out["x-gateway-route"], _, out["x-gateway-strategy"] = reply["route"].partition(";")
    for kind, (limit, remaining, reset_s) in (reply.get("ratelimit") or {}).items():
        out[f"x-ratelimit-limit-{kind}"] = str(int(limit))
        out[f"x-ratelimit-remaining-{kind}"] = str(int(remaining))
        out[f"x-ratelimit-reset-{kind}"] = f"{reset_s:.3f}s"
    return out
