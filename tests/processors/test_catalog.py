"""The catalog prices requests at list price; every model of the product page is in it."""

from __future__ import annotations

import pytest

from processors.catalog import cost_usd, image_cost_usd, load_catalog


def test_the_product_page_models_are_in_the_catalog() -> None:
    models = load_catalog().models

    assert {"gpt-4o", "gpt-4o-mini", "o1", "o3", "claude-sonnet-4-20250514", "gemini-pro"} <= set(models)


def test_cost_is_tokens_times_price_per_million_with_cached_input_cheaper() -> None:
    gpt4o = load_catalog().models["gpt-4o"]

    assert cost_usd(gpt4o, 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd(gpt4o, 0, 1_000_000) == pytest.approx(10.00)
    assert cost_usd(gpt4o, 1000, 500, cached_tokens=400) == pytest.approx((600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6)


def test_anthropic_cache_writes_are_billed_at_their_own_price() -> None:
    sonnet = load_catalog().models["claude-sonnet-4-20250514"]

    # 1,000 prompt tokens: 600 written to the cache ($3.75/M), 300 read from it ($0.30/M), 100 plain ($3/M).
    assert cost_usd(sonnet, 1000, 0, cached_tokens=300, cache_write_tokens=600) == pytest.approx(
        (100 * 3.00 + 300 * 0.30 + 600 * 3.75) / 1e6)


def test_a_prompt_past_the_long_context_threshold_is_billed_at_the_higher_tier() -> None:
    gemini = load_catalog().models["gemini-pro"]

    assert cost_usd(gemini, 128_000, 1000) == pytest.approx((128_000 * 1.25 + 1000 * 5.00) / 1e6)
    assert cost_usd(gemini, 128_001, 1000) == pytest.approx((128_001 * 2.50 + 1000 * 10.00) / 1e6)


@pytest.mark.parametrize(("size", "quality", "price"), [
    (None, None, 0.04), ("1024x1024", "standard", 0.04), ("1792x1024", "standard", 0.08),
    ("1024x1024", "hd", 0.08), ("1024x1792", "hd", 0.12),
])
def test_images_are_priced_by_size_and_quality(size: str | None, quality: str | None, price: float) -> None:
    assert image_cost_usd(load_catalog().models["dall-e-3"], 2, size, quality) == pytest.approx(2 * price)
