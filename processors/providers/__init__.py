"""One adapter module per provider; this registry maps a provider kind to its adapter."""

from __future__ import annotations

from processors.providers import anthropic, azure, bedrock, gemini, openai
from processors.providers.base import ChatAdapter

ADAPTERS: dict[str, ChatAdapter] = {
    "openai": openai,  # type: ignore[dict-item]
    "openai_compatible": openai,  # type: ignore[dict-item]
    "azure": azure,  # type: ignore[dict-item]
    "anthropic": anthropic,  # type: ignore[dict-item]
    "gemini": gemini,  # type: ignore[dict-item]
    "bedrock": bedrock,  # type: ignore[dict-item]
}
