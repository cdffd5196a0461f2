"""The model catalog (data in catalog.yaml) and the pure functions that price a request from it."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

BUILTIN = Path(__file__).with_name("catalog.yaml")


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    upstream_model: str | None = None
    input_per_mtok: float = Field(0, ge=0)
    output_per_mtok: float = Field(0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    per_image_usd: float | None = Field(None, ge=0, description="Image models: price of one image.")
    context_window: int = Field(gt=0)
    capabilities: tuple[str, ...] = ()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    models: dict[str, ModelInfo]


def load_catalog(path: Path | None = None) -> Catalog:
    return Catalog.model_validate(yaml.safe_load((path or BUILTIN).read_text()))


def cost_usd(info: ModelInfo, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """List-price cost of one call; cached prompt tokens are billed at the cached-input price."""
    cached_price = info.input_per_mtok if info.cached_input_per_mtok is None else info.cached_input_per_mtok
    uncached = max(prompt_tokens - cached_tokens, 0)
    micro = uncached * info.input_per_mtok + cached_tokens * cached_price + completion_tokens * info.output_per_mtok
    return round(micro / 1_000_000, 10)


def image_cost_usd(info: ModelInfo, images: int) -> float:
    return round((info.per_image_usd or 0.0) * images, 10)
