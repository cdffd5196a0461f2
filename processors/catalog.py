"""The model catalog (data in catalog.yaml) and the pure functions that price a request from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

BUILTIN = Path(__file__).with_name("catalog.yaml")


class LongContext(BaseModel):
    """A price tier for prompts longer than `above_tokens` (Gemini 1.5 doubles its prices past 128k)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    above_tokens: int = Field(gt=0)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    upstream_model: str | None = None
    input_per_mtok: float = Field(0, ge=0)
    output_per_mtok: float = Field(0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0, description="Anthropic: prompt-cache writes.")
    long_context: LongContext | None = None
    per_image_usd: float | None = Field(None, ge=0, description="Image models: one image at the default size.")
    image_prices: dict[str, float] = Field(default_factory=dict, description="'<quality>:<size>' -> USD per image.")
    context_window: int = Field(gt=0)
    capabilities: tuple[str, ...] = ()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    models: dict[str, ModelInfo]


def load_catalog(path: Path | None = None) -> Catalog:
    return Catalog.model_validate(yaml.safe_load((path or BUILTIN).read_text()))


def cost_usd(info: ModelInfo, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             cache_write_tokens: int = 0) -> float:
    """List-price cost of one call. `prompt_tokens` counts every input token; of them, cached reads are
    billed at the cached-input price and cache writes at the cache-write price; a prompt past a long-context
    tier's threshold is billed at that tier's prices."""
    tier = info.long_context if info.long_context and prompt_tokens > info.long_context.above_tokens else None
    rates: ModelInfo | LongContext = tier or info
    cached_price = rates.input_per_mtok if rates.cached_input_per_mtok is None else rates.cached_input_per_mtok
    write_price = info.input_per_mtok if info.cache_write_per_mtok is None else info.cache_write_per_mtok
    uncached = max(prompt_tokens - cached_tokens - cache_write_tokens, 0)
    micro = (uncached * rates.input_per_mtok + cached_tokens * cached_price + cache_write_tokens * write_price
             + completion_tokens * rates.output_per_mtok)
    return round(micro / 1_000_000, 10)


def image_cost_usd(info: ModelInfo, images: int, size: str | None = None, quality: str | None = None) -> float:
    """Images are priced by size and quality where the catalog says so (DALL-E 3 HD at 1792x1024: $0.12)."""
    price = info.image_prices.get(f"{quality or 'standard'}:{size or '1024x1024'}", info.per_image_usd or 0.0)
    return round(price * images, 10)


DEFAULT_COMPLETION_TOKENS = 512  # what a request that names no max_tokens is expected to generate


def prompt_estimate(request: dict[str, Any]) -> int:
    """Prompt tokens before the call: four characters a token (the provider's count settles it after)."""
    chars = sum(len(m.get("content") or "") + sum(len(p.get("text") or "") for p in m.get("parts") or ())
                for m in request.get("messages") or ())
    return max(1, chars // 4)


def expected_tokens(request: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens expected before the call."""
    return prompt_estimate(request), request.get("max_tokens") or DEFAULT_COMPLETION_TOKENS


def expected_cost_usd(info: ModelInfo, request: dict[str, Any]) -> float:
    """What a request is expected to cost at this model's prices: a budget's reservation, `cheapest`'s order."""
    return cost_usd(info, *expected_tokens(request))
