"""The cache, end to end on the real broker with the real store and embedder (`gateway cache`): exact and
semantic hits, misses across projects and parameters, TTL, purge, a streamed hit, the rebuild by replay,
and the cache away (answered by the provider, saying so)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from analytics.rows import REQUEST_COLUMNS, request_row
from tests.conftest import (
    ADMIN_KEY,
    GATEWAY_KEY,
    OTHER_PROJECT_KEY,
    Gateway,
    free_port,
    start_gateway,
    stop_process,
    wait_for_port,
    write_config,
)
from tests.kafka_events import read_events


@pytest.fixture(scope="module")
def cached(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("cache")
    config = write_config(home / "gateway.yaml", openai_mock)
    raw = yaml.safe_load(config.read_text())
    port = free_port()
    # A semantic lookup embeds the prompt through the gateway's own /v1/embeddings (two Kafka hops and the
    # embedder): on a busy test machine that can pass the 300 ms default, and a lookup past it is `skipped`
    # (tested below with the cache stopped). These tests are about what matches, so the lookup may take longer.
    raw["cache"] = {"url": f"http://127.0.0.1:{port}", "store": {"path": str(home / "store")},
                    "models": {"gpt-4o-mini": "exact"}, "lookup_timeout_ms": 5000}
    config.write_text(yaml.safe_dump(raw))
    gateway = start_gateway(bootstrap, config, logs)
    try:  # a cache that does not start leaves no gateway behind
        _start_cache(gateway, port)
        yield gateway
    finally:
        gateway.stop()


def _start_cache(gateway: Gateway, port: int) -> None:
    with open(gateway.logs / "cache.log", "ab") as log:
        gateway.extra.append(subprocess.Popen([sys.executable, "-m", "infra.cli", "cache"], env=gateway.env,
                                              stdout=log, stderr=log))
    wait_for_port(port, gateway.extra[-1])


def _cache_port(gateway: Gateway) -> int:
    return int(yaml.safe_load(Path(gateway.env["GATEWAY_CONFIG"]).read_text())["cache"]["url"].rsplit(":", 1)[1])


def _ask(gateway: Gateway, text: str, key: str = GATEWAY_KEY, headers: dict[str, str] | None = None,
         **body: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/gateway/chat", timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **body})


def _until(gateway: Gateway, want: str, text: str, **body: Any) -> httpx.Response:
    """Ask until the cache says `want` (the writer folds a fill within moments of its answer). Asking a
    text again until it is a `hit` shows its answer is in the cache: ask its variants only after that
    (a variant asked earlier misses, and its own answer then fills the cache)."""
    deadline = time.monotonic() + 15
    while True:
        response = _ask(gateway, text, **body)
        if response.headers.get("x-gateway-cache", "").startswith(want) or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


SEMANTIC = {"cache": {"mode": "semantic", "threshold": 0.95}}


def test_an_exact_hit_answers_without_the_provider_and_says_what_it_saved(cached: Gateway) -> None:
    first = _ask(cached, "what is an exact hit?", cache={"mode": "exact"})
    assert first.status_code == 200 and first.headers["x-gateway-cache"] == "miss"
    hit = _until(cached, "hit", "what is an exact hit?", cache={"mode": "exact"})

    assert hit.headers["x-gateway-cache"] == "hit"
    assert hit.json()["content"] == first.json()["content"] and hit.json()["usage"]["cost_usd"] == 0
    usage = cached.events(cached.topics.usage, hit.json()["id"])[0]
    assert (usage["cache"], usage["cost_usd"], usage["attempts"]) == ("hit", 0.0, 0)
    assert usage["cost_saved_usd"] == pytest.approx(first.json()["usage"]["cost_usd"])
    assert not cached.events(cached.topics.attempts, hit.json()["id"], expect=0, timeout_s=0.5)


def test_a_paraphrase_is_a_semantic_hit_and_a_different_question_is_not(cached: Gateway) -> None:
    original = _ask(cached, "How do I reset my password?", **SEMANTIC)
    assert original.headers["x-gateway-cache"] == "miss"
    _until(cached, "hit", "How do I reset my password?", **SEMANTIC)  # its answer is in the cache
    hit = _ask(cached, "I forgot my password, how can I reset it?", **SEMANTIC)

    assert hit.headers["x-gateway-cache"].startswith("semantic-hit; similarity=0.9")
    assert hit.json()["content"] == "Hello from the mock! You said: How do I reset my password?"
    usage = cached.events(cached.topics.usage, hit.json()["id"])[0]
    assert usage["cache"] == "semantic-hit" and usage["cache_similarity"] >= 0.95
    other = _ask(cached, "What is the capital of France?", **SEMANTIC)
    assert other.headers["x-gateway-cache"] == "miss"


def test_a_near_miss_with_other_numbers_or_the_words_reordered_is_a_miss(cached: Gateway) -> None:
    _ask(cached, "Convert 10 miles to kilometers", **SEMANTIC)
    _until(cached, "hit", "Convert 10 miles to kilometers", **SEMANTIC)
    assert _ask(cached, "Convert 10 miles into kilometers", **SEMANTIC).headers["x-gateway-cache"].startswith(
        "semantic-hit")

    assert _ask(cached, "Convert 10 kilometers to miles", **SEMANTIC).headers["x-gateway-cache"] == "miss"
    assert _ask(cached, "Convert 12 miles to kilometers", **SEMANTIC).headers["x-gateway-cache"] == "miss"


def test_a_hit_never_crosses_projects_or_answer_changing_parameters(cached: Gateway) -> None:
    _ask(cached, "scoped question", cache={"mode": "exact"})
    assert _until(cached, "hit", "scoped question", cache={"mode": "exact"}).headers["x-gateway-cache"] == "hit"

    assert _ask(cached, "scoped question", key=OTHER_PROJECT_KEY,
                cache={"mode": "exact"}).headers["x-gateway-cache"] == "miss"
    assert _ask(cached, "scoped question", cache={"mode": "exact"},
                temperature=0.3).headers["x-gateway-cache"] == "miss"
    assert _ask(cached, "scoped question", cache={"mode": "exact"},
                max_tokens=7).headers["x-gateway-cache"] == "miss"
    assert "x-gateway-cache" not in _ask(cached, "scoped question").headers  # not asked: no cache at all


def test_skip_refresh_and_a_model_configured_for_the_cache(cached: Gateway) -> None:
    _ask(cached, "configured", model="gpt-4o-mini")  # gpt-4o-mini is cached (exact) by configuration
    assert _until(cached, "hit", "configured", model="gpt-4o-mini").headers["x-gateway-cache"] == "hit"
    skipped = _ask(cached, "configured", model="gpt-4o-mini", headers={"x-gateway-cache": "skip"})
    assert "x-gateway-cache" not in skipped.headers and skipped.json()["usage"]["cost_usd"] > 0
    refreshed = _ask(cached, "configured", model="gpt-4o-mini", headers={"x-gateway-cache": "refresh"})
    assert refreshed.headers["x-gateway-cache"] == "miss" and refreshed.json()["usage"]["cost_usd"] > 0


def test_entries_expire_and_are_purged(cached: Gateway) -> None:
    _ask(cached, "short-lived", cache={"mode": "exact", "ttl_s": 2})
    # Asked again with the same TTL: an ask that comes before the first fill is in the cache fills it again.
    assert _until(cached, "hit", "short-lived", cache={"mode": "exact", "ttl_s": 2}).headers["x-gateway-cache"] == "hit"
    time.sleep(2.2)
    assert _ask(cached, "short-lived", cache={"mode": "exact"}).headers["x-gateway-cache"] == "miss"

    for text in ("to be purged", "purged and never asked again"):
        _ask(cached, text, cache={"mode": "exact"})
        assert _until(cached, "hit", text, cache={"mode": "exact"}).headers["x-gateway-cache"] == "hit"
    purged = httpx.delete(cached.url + "/v1/admin/cache", params={"project": "proj-a", "model": "gpt-4o"},
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert purged.status_code == 200, purged.text
    time.sleep(1.0)
    assert _ask(cached, "to be purged", cache={"mode": "exact"}).headers["x-gateway-cache"] == "miss"


def test_a_hit_streams_in_the_chunk_format_of_a_live_answer(cached: Gateway) -> None:
    text = "stream me a cached answer"
    _ask(cached, text, cache={"mode": "exact"})
    _until(cached, "hit", text, cache={"mode": "exact"})
    client = openai.OpenAI(base_url=cached.url + "/v1", api_key=GATEWAY_KEY)
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], stream=True,
        extra_body={"cache": {"mode": "exact"}})
    chunks = list(stream.parse())

    assert stream.headers["x-gateway-cache"] == "hit"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        f"Hello from the mock! You said: {text}"
    # Word by word, as a live answer; words that come while one is in flight leave together.
    assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason == "stop"


def test_bad_cache_options_are_a_400_naming_them(cached: Gateway) -> None:
    bad_mode = _ask(cached, "x", cache={"mode": "sometimes"})
    assert bad_mode.status_code == 400 and bad_mode.json()["error"]["param"] == "cache.mode"
    bad_header = _ask(cached, "x", headers={"x-gateway-cache": "maybe"})
    assert bad_header.status_code == 400 and bad_header.json()["error"]["param"] == "x-gateway-cache"


def test_the_cache_is_rebuilt_by_replay_and_its_absence_is_only_a_skip(cached: Gateway) -> None:
    _ask(cached, "survives a rebuild", cache={"mode": "exact"})
    assert _until(cached, "hit", "survives a rebuild", cache={"mode": "exact"}).headers["x-gateway-cache"] == "hit"
    cache_process = cached.extra.pop()
    stop_process(cache_process)

    away = _ask(cached, "survives a rebuild", cache={"mode": "exact"})
    assert away.status_code == 200 and away.headers["x-gateway-cache"] == "skipped"
    assert away.json()["usage"]["cost_usd"] > 0  # the provider answered

    store = Path(yaml.safe_load(Path(cached.env["GATEWAY_CONFIG"]).read_text())["cache"]["store"]["path"])
    shutil.rmtree(store)
    _start_cache(cached, _cache_port(cached))
    rebuilt = _until(cached, "hit", "survives a rebuild", cache={"mode": "exact"})
    assert rebuilt.headers["x-gateway-cache"] == "hit"
    # What was purged before stays purged: the purge is in the log after the answers it dropped.
    assert _ask(cached, "purged and never asked again", cache={"mode": "exact"}).headers["x-gateway-cache"] == "miss"



def test_a_hit_becomes_an_analytics_row_with_what_it_saved(cached: Gateway) -> None:
    first = _ask(cached, "worth saving", cache={"mode": "exact"})
    hit = _until(cached, "hit", "worth saving", cache={"mode": "exact"})

    rows = [dict(zip(REQUEST_COLUMNS, request_row(cached.events(cached.topics.usage, r.json()["id"])[0]),
                     strict=True)) for r in (first, hit)]
    assert (rows[0]["cache"], rows[0]["cost_saved_usd"]) == ("miss", 0.0)
    assert rows[1]["cache"] == "hit" and rows[1]["cost_saved_usd"] == pytest.approx(rows[0]["cost_usd"])


def test_embeddings_from_a_model_the_gateway_serves(cached: Gateway, tmp_path: Path) -> None:
    stop_process(cached.extra.pop())
    raw = yaml.safe_load(Path(cached.env["GATEWAY_CONFIG"]).read_text())
    raw["cache"].update({"embeddings_model": "text-embedding-3-small", "dimensions": 16, "gateway_url": cached.url,
                         "store": {"path": str(tmp_path / "store")}})
    config = tmp_path / "cache.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**cached.env, "GATEWAY_CONFIG": str(config), "GATEWAY_CACHE_KEY": GATEWAY_KEY}
    with open(cached.logs / "cache.log", "ab") as log:
        cached.extra.append(subprocess.Popen([sys.executable, "-m", "infra.cli", "cache"], env=env, stdout=log,
                                             stderr=log))
    wait_for_port(_cache_port(cached), cached.extra[-1])

    first = _ask(cached, "embedded by the gateway", **SEMANTIC)
    assert first.headers["x-gateway-cache"] == "miss"
    # Another exact key (the whitespace differs), the same text compared: the gateway's embedding finds it.
    _until(cached, "hit", "embedded by the gateway", **SEMANTIC)
    hit = _ask(cached, "embedded by the gateway ", **SEMANTIC)
    assert hit.headers["x-gateway-cache"].startswith("semantic-hit; similarity=1.0")
    spent = [u for _, u in read_events(cached.bootstrap, cached.topics.usage) if u["operation"] == "embeddings"]
    assert spent and {u["model"] for u in spent} == {"text-embedding-3-small"}  # routed and billed like any


def test_analytics_counts_hits_and_what_they_saved(cached: Gateway, tmp_path: Path) -> None:
    port = free_port()
    with open(cached.logs / "analytics.log", "ab") as log:
        cached.extra.insert(0, subprocess.Popen([sys.executable, "-m", "infra.cli", "analytics", "--port", str(port)],
                                                env={**cached.env, "GATEWAY_HOME": str(tmp_path)}, stdout=log,
                                                stderr=log))
    wait_for_port(port, cached.extra[0])
    usage = [u for _, u in read_events(cached.bootstrap, cached.topics.usage) if u["operation"] == "chat"]
    hits = [u for u in usage if u["cache"] in ("hit", "semantic-hit")]
    assert hits

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = httpx.get(f"http://127.0.0.1:{port}/v1/analytics/summary", params={"group_by": "project"},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).json()["rows"]
        if sum(r["requests"] for r in rows) >= len(usage):
            break
        time.sleep(0.5)
    assert sum(r["cache_hits"] for r in rows) == len(hits)
    assert sum(r["cost_saved_usd"] for r in rows) == pytest.approx(sum(u["cost_saved_usd"] for u in hits))
