"""The catalog prices requests at list price; every model of the product page is in it."""

from __future__ import annotations

import pytest

from processors.catalog import cost_usd, load_catalog


def test_the_product_page_models_are_in_the_catalog() -> None:
    models = load_catalog().models

    assert {"gpt-4o", "gpt-4o-mini", "o1", "o3", "claude-sonnet-4-20250514", "gemini-pro"} <= set(models)


def test_cost_is_tokens_times_price_per_million_with_cached_input_cheaper() -> None:
    gpt4o = load_catalog().models["gpt-4o"]

    assert cost_usd(gpt4o, 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd(gpt4o, 0, 1_000_000) == pytest.approx(10.00)
    assert cost_usd(gpt4o, 1000, 500, cached_tokens=400) == pytest.approx((600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6)
