"""The cache's two stores behave alike: Qdrant Edge (the embedded default) and qdrant-client (its local
mode, the same API a Qdrant server is reached through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.cache.store import ClientStore, EdgeStore, VectorStore

NOW = 1_790_000_000_000


def _vector(seed: int, noise: float = 0.0) -> list[float]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(384)
    if noise:
        base = base + noise * np.random.default_rng(seed + 1000).standard_normal(384)
    return list(map(float, base / np.linalg.norm(base)))


def _entry(key: str, scope: str = "s1", project: str = "p", model: str = "m", expires: int = NOW + 60_000,
           recorded: int = NOW) -> dict[str, Any]:
    return {"exact_key": key, "scope": scope, "project": project, "model": model, "recorded_at_ms": recorded,
            "expires_at_ms": expires, "response_json": f'{{"content": "{key}"}}', "cost_usd": 0.01}


@pytest.fixture(params=["edge", "client-local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    if request.param == "edge":
        return EdgeStore(tmp_path / "edge")
    return ClientStore("cache", local_path=tmp_path / "local")


def test_exact_and_semantic_hits_stay_in_their_scope_and_time(store: VectorStore) -> None:
    assert store.created
    store.put(_entry("k1"), _vector(1))
    store.put(_entry("k2", scope="s2"), _vector(2))
    store.put(_entry("k3", expires=NOW - 1), _vector(3))
    store.put(_entry("k4"), None)  # exact only

    assert store.exact("k1", NOW)["response_json"] == '{"content": "k1"}'  # type: ignore[index]
    assert store.exact("k3", NOW) is None  # expired
    assert store.exact("k4", NOW) is not None
    hits = store.nearest(_vector(1, noise=0.1), "s1", 0.9, NOW)
    assert [h[0]["exact_key"] for h in hits] == ["k1"] and 0.9 <= hits[0][1] < 1.0
    assert store.nearest(_vector(2), "s1", 0.9, NOW) == []  # the right vector, another scope
    assert store.nearest(_vector(3), "s1", 0.9, NOW) == []  # expired
    assert store.nearest(_vector(5), "s1", 0.9, NOW) == []  # nothing near enough


def test_purge_and_expiry_remove_entries(store: VectorStore) -> None:
    store.put(_entry("a", model="m1"), _vector(1))
    store.put(_entry("b", model="m2"), _vector(2))
    store.put(_entry("c", project="q"), _vector(3))
    store.put(_entry("d", model="m1", recorded=NOW + 10), _vector(4))  # recorded after the purge
    store.put(_entry("e", expires=NOW - 5), None)

    store.purge("p", "m1", NOW)
    assert [store.exact(k, NOW) is not None for k in "abcd"] == [False, True, True, True]
    store.purge("p", None, NOW + 10)
    assert [store.exact(k, NOW) is not None for k in "abcd"] == [False, False, True, False]
    store.expire(NOW)
    assert store.count() == 1


def test_a_refill_replaces_the_entry_and_the_store_reopens(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge")
    store.put(_entry("k"), _vector(1))
    store.put({**_entry("k"), "response_json": "new"}, _vector(1))
    store.maintain()
    store.close()

    reopened = EdgeStore(tmp_path / "edge")
    assert not reopened.created and reopened.count() == 1
    assert reopened.exact("k", NOW)["response_json"] == "new"  # type: ignore[index]
