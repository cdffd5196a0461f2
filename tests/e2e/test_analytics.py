"""Analytics from the log: after requests of known models through the real path (plain, streamed, failed,
failed over), the store, its views, the query API, `gateway sql` and the exports report exactly what the
usage events say; duplicates count once; a key reads its own project only; bad parameters get a 400."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from schemas import codec
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

ROUTE = "team-default"  # a route (virtual model) of the stack's routes file


@pytest.fixture(scope="module")
def stack(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Gateway, str, Path]]:
    """A gateway and its analytics process (sink + query API) on a fresh chDB directory."""
    workdir = tmp_path_factory.mktemp("analytics")
    port = free_port()
    config = write_config(workdir / "gateway.yaml", openai_mock)
    (workdir / "routes.yaml").write_text(yaml.safe_dump({"routes": {ROUTE: {"targets": [
        {"provider": "openai", "model": "gpt-4o-mini"}]}}}))
    config.write_text(config.read_text() + f"analytics: {{url: 'http://127.0.0.1:{port}', path: '{workdir / 'store'}', "
                      "linger_ms: 50}\nroutes_file: routes.yaml\n")
    gateway = start_gateway(bootstrap, config, logs)
    try:  # an analytics process that does not start leaves no gateway behind
        _start_analytics(gateway, port)
        yield gateway, f"http://127.0.0.1:{port}", workdir
    finally:
        gateway.stop()


def _start_analytics(gateway: Gateway, port: int) -> subprocess.Popen[bytes]:
    with open(gateway.logs / "analytics.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.cli", "analytics", "--port", str(port)],
                                   env=gateway.env, stdout=log, stderr=log)
    wait_for_port(port, process)
    gateway.extra.append(process)
    return process


def _get(url: str, path: str, key: str = ADMIN_KEY, **params: Any) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _chat(gateway: Gateway, model: str, text: str, key: str = GATEWAY_KEY, **extra: Any) -> str:
    response = httpx.post(gateway.url + "/v1/gateway/chat", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"model": model, "messages": [{"role": "user", "content": text}], "user": "ana",
                                **extra})
    if extra.get("stream"):
        return response.headers["x-request-id"]
    return response.headers["x-request-id"]


def _wait_for_rows(url: str, expected: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        columns_rows = httpx.post(url + "/v1/analytics/sql", json={"query": "SELECT count() FROM requests FINAL"},
                                  headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        if columns_rows.status_code == 200 and columns_rows.json()["rows"][0][0] >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {expected} requests reached the store")


def _truth(gateway: Gateway, ids: set[str]) -> dict[str, dict[str, float]]:
    """Per model, what the usage events on Kafka say: requests, tokens, cost."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for _, usage in read_events(gateway.bootstrap, gateway.topics.usage):
        if usage["request_id"] in ids:
            row = totals[usage["model"]]
            row["requests"] += 1
            row["prompt_tokens"] += usage["prompt_tokens"]
            row["completion_tokens"] += usage["completion_tokens"]
            row["cost_usd"] += usage["cost_usd"]
    return totals


def _by_model(url: str, key: str = ADMIN_KEY, **params: Any) -> dict[str, dict[str, Any]]:
    response = _get(url, "/v1/analytics/summary", key, group_by="model", **params)
    assert response.status_code == 200, response.text
    return {row["model"]: row for row in response.json()["rows"]}


def _assert_matches(summary: dict[str, dict[str, Any]], truth: dict[str, dict[str, float]]) -> None:
    assert set(summary) == set(truth)
    for model, row in truth.items():
        assert summary[model]["requests"] == row["requests"], model
        assert summary[model]["prompt_tokens"] == row["prompt_tokens"], model
        assert summary[model]["completion_tokens"] == row["completion_tokens"], model
        assert summary[model]["cost_usd"] == pytest.approx(row["cost_usd"]), model


def _produce_again(gateway: Gateway, ids: set[str]) -> int:
    """Write every usage and attempt event of these requests onto their topics a second time."""
    again = [(topic, name, event) for topic in (gateway.topics.usage, gateway.topics.attempts)
             for name, event in read_events(gateway.bootstrap, topic) if event["request_id"] in ids]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=gateway.bootstrap)
        await producer.start()
        try:
            for topic, name, event in again:
                await producer.send_and_wait(topic, codec.encode(name, event), key=event["project"].encode(),
                                             headers=codec.headers(name))
        finally:
            await producer.stop()

    asyncio.run(produce())
    return len(again)


def test_the_views_the_api_the_sql_and_the_exports_report_exactly_the_traffic(
        stack: tuple[Gateway, str, Path]) -> None:
    gateway, url, _ = stack
    run = uuid.uuid4().hex[:6]
    ids = {_chat(gateway, "gpt-4o", f"plain {run} {i} one two three") for i in range(5)}
    ids |= {_chat(gateway, "gpt-4o-mini", f"streamed {run} {i}", stream=True) for i in range(3)}
    ids |= {_chat(gateway, "bad-params", f"failed {run} {i}") for i in range(2)}
    ids |= {_chat(gateway, "flaky-500", f"failed over {run} {i}", fallback=["gpt-4o-mini"]) for i in range(2)}
    ids |= {_chat(gateway, "gpt-4o", f"other project {run} {i}", key=OTHER_PROJECT_KEY) for i in range(2)}
    _wait_for_rows(url, len(ids))
    truth = _truth(gateway, ids)
    assert sum(row["requests"] for row in truth.values()) == 14

    _assert_matches(_by_model(url), truth)

    by_status = {r["status"]: r for r in _get(url, "/v1/analytics/summary", group_by="status").json()["rows"]}
    assert by_status["error"]["requests"] == 2 and by_status["ok"]["requests"] == 12
    assert sum(r["failed_over"] for r in by_status.values()) == 2
    per_minute = _get(url, "/v1/analytics/summary", interval="minute").json()["rows"]
    assert sum(r["requests"] for r in per_minute) == 14
    per_day = _get(url, "/v1/analytics/summary", interval="day", group_by="project").json()["rows"]
    assert {(r["project"], r["requests"]) for r in per_day} == {("proj-a", 12), ("proj-b", 2)}
    assert all(r["latency_ms"]["p50"] > 0 for r in per_minute)

    page = _get(url, "/v1/analytics/requests", limit=10).json()
    rest = _get(url, "/v1/analytics/requests", limit=10, cursor=page["next_cursor"]).json()
    assert {r["request_id"] for r in page["data"] + rest["data"]} == ids and rest["next_cursor"] is None
    streamed = [r for r in page["data"] + rest["data"] if r["stream"]]
    assert len(streamed) == 3 and all(r["ttft_ms"] is not None and r["user"] == "ana" for r in streamed)

    csv_rows = list(csv.DictReader(io.StringIO(_get(url, "/v1/analytics/export", format="csv").text)))
    jsonl = [json.loads(line) for line in _get(url, "/v1/analytics/export", format="jsonl").text.splitlines()]
    table = pq.read_table(io.BytesIO(_get(url, "/v1/analytics/export", format="parquet").content))
    assert len(csv_rows) == len(jsonl) == table.num_rows == 14
    assert sum(float(r["cost_usd"]) for r in csv_rows) == pytest.approx(sum(t["cost_usd"] for t in truth.values()))

    sql = subprocess.run([sys.executable, "-m", "infra.cli", "sql", "--format", "json",
                          "SELECT model, count() AS n FROM requests FINAL GROUP BY model ORDER BY model"],
                         env={**gateway.env, "GATEWAY_ADMIN_KEY": ADMIN_KEY}, capture_output=True, text=True)
    assert sql.returncode == 0, sql.stderr
    assert {json.loads(line)["model"]: json.loads(line)["n"] for line in sql.stdout.splitlines()} == {
        model: row["requests"] for model, row in truth.items()}

    # The same events delivered again (a producer's retry, a router run twice) count once.
    assert _produce_again(gateway, ids) >= 14
    time.sleep(1.5)
    _assert_matches(_by_model(url), truth)
    attempts = httpx.post(url + "/v1/analytics/sql", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          json={"query": "SELECT count() FROM attempts"}).json()["rows"][0][0]
    on_kafka = [a["attempt_id"] for _, a in read_events(gateway.bootstrap, gateway.topics.attempts)
                if a["request_id"] in ids]
    assert len(on_kafka) == 2 * attempts == 2 * len(set(on_kafka))  # each written twice, stored once


def test_requests_and_spend_group_by_the_route_that_chose_the_target(stack: tuple[Gateway, str, Path]) -> None:
    gateway, url, _ = stack
    run = uuid.uuid4().hex[:6]
    routed = {_chat(gateway, ROUTE, f"routed {run} {i}") for i in range(3)}
    named = _chat(gateway, "gpt-4o-mini", f"named {run}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and named not in _get(url, "/v1/analytics/requests", limit=1000).text:
        time.sleep(0.2)
    log = _get(url, "/v1/analytics/requests", route=ROUTE, limit=1000).json()["data"]
    assert {r["request_id"] for r in log} == routed and {r["strategy"] for r in log} == {"fallback"}

    spent = sum(u["cost_usd"] for _, u in read_events(gateway.bootstrap, gateway.topics.usage)
                if u["request_id"] in routed)
    rows = _get(url, "/v1/analytics/summary", group_by="route,model", route=ROUTE).json()["rows"]
    assert [(r["route"], r["model"], r["requests"]) for r in rows] == [(ROUTE, "gpt-4o-mini", 3)]
    assert rows[0]["cost_usd"] == pytest.approx(spent) and spent > 0
    by_route = {r["route"]: r["requests"] for r in _get(url, "/v1/analytics/summary", group_by="route").json()["rows"]}
    assert by_route[ROUTE] == 3 and by_route[""] >= 1  # '': the client named a model


def test_a_key_reads_its_own_project_only(stack: tuple[Gateway, str, Path]) -> None:
    gateway, url, _ = stack
    _chat(gateway, "gpt-4o", "isolation", key=OTHER_PROJECT_KEY)
    _wait_for_rows(url, 1)

    rows = _get(url, "/v1/analytics/summary", OTHER_PROJECT_KEY, group_by="project").json()["rows"]
    assert {r["project"] for r in rows} == {"proj-b"}
    log = _get(url, "/v1/analytics/requests", GATEWAY_KEY, limit=1000).json()["data"]
    assert log and {r["project"] for r in log} == {"proj-a"}
    assert _get(url, "/v1/analytics/summary", GATEWAY_KEY, project="proj-b").status_code == 403
    denied = httpx.post(url + "/v1/analytics/sql", json={"query": "SELECT 1"},
                        headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert denied.status_code == 403
    assert _get(url, "/v1/analytics/summary", "sk-nobody").status_code == 401


@pytest.mark.parametrize(("params", "param"), [
    ({"group_by": "colour"}, "group_by"),
    ({"interval": "fortnight"}, "interval"),
    ({"from": "2026-11-25T10:00:00Z", "to": "2026-11-25T09:00:00Z"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-45"}, "to"),
    ({"limit": "0"}, "limit"),
    ({"cursor": "nonsense"}, "cursor"),
    ({"format": "xlsx"}, "format"),
])
def test_bad_query_parameters_get_a_400_naming_them(stack: tuple[Gateway, str, Path], params: dict[str, str],
                                                     param: str) -> None:
    _, url, _ = stack
    path = {"limit": "/v1/analytics/requests", "cursor": "/v1/analytics/requests",
            "format": "/v1/analytics/export"}.get(param, "/v1/analytics/summary")
    response = _get(url, path, **params)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("query", ["DROP TABLE requests", "INSERT INTO requests (event_id) VALUES ('x')",
                                   "ALTER TABLE requests DELETE WHERE 1", "SET max_threads = 1"])
def test_sql_that_writes_is_refused(stack: tuple[Gateway, str, Path], query: str) -> None:
    _, url, _ = stack
    response = httpx.post(url + "/v1/analytics/sql", json={"query": query},
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "read_only"


def test_deleting_the_store_and_replaying_the_topics_rebuilds_the_same_totals(
        stack: tuple[Gateway, str, Path]) -> None:
    gateway, url, workdir = stack
    _chat(gateway, "gpt-4o", "before the rebuild")
    _wait_for_rows(url, 1)
    time.sleep(1)
    before = _by_model(url, to="2100-01-01T00:00:00Z", **{"from": "2000-01-01T00:00:00Z"})
    process = gateway.extra.pop()
    stop_process(process)
    shutil.rmtree(workdir / "store")

    _start_analytics(gateway, int(url.rsplit(":", 1)[1]))
    _wait_for_rows(url, sum(r["requests"] for r in before.values()))
    time.sleep(1)
    after = _by_model(url, to="2100-01-01T00:00:00Z", **{"from": "2000-01-01T00:00:00Z"})
    assert {m: (r["requests"], r["prompt_tokens"], r["completion_tokens"]) for m, r in after.items()} == \
        {m: (r["requests"], r["prompt_tokens"], r["completion_tokens"]) for m, r in before.items()}
    assert {m: r["cost_usd"] for m, r in after.items()} == pytest.approx({m: r["cost_usd"] for m, r in before.items()})
    assert os.path.isdir(workdir / "store")


def test_the_ingress_passes_analytics_through_on_its_own_address(stack: tuple[Gateway, str, Path]) -> None:
    gateway, url, _ = stack
    request_id = _chat(gateway, "gpt-4o", "through the front door")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and request_id not in _get(url, "/v1/analytics/requests", limit=1000).text:
        time.sleep(0.2)  # this request is in the store: nothing else is on its way

    via_ingress = _get(gateway.url, "/v1/analytics/summary", group_by="model")
    direct = _get(url, "/v1/analytics/summary", group_by="model")
    assert via_ingress.status_code == 200 and via_ingress.json()["rows"] == direct.json()["rows"]
    exported = _get(gateway.url, "/v1/analytics/export", format="csv")
    assert exported.headers["content-type"].startswith("text/csv") and exported.text.startswith('"event_id"')
    assert _get(gateway.url, "/v1/analytics/summary", group_by="colour").status_code == 400


def test_the_readmes_queries_run(stack: tuple[Gateway, str, Path]) -> None:
    _, url, _ = stack
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index("Three useful queries"):].split("```sql\n", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in block.split(";") if s.strip()]
    assert len(statements) == 3
    for statement in statements:
        response = httpx.post(url + "/v1/analytics/sql", json={"query": statement},
                              headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 200, (statement, response.text)


def test_the_dashboard_in_a_real_browser_shows_what_clickhouse_holds(stack: tuple[Gateway, str, Path],
                                                                     logs: Path) -> None:
    from playwright.sync_api import sync_playwright

    gateway, url, _ = stack
    for i in range(3):
        _chat(gateway, "gpt-4o", f"dashboard {i}")
    _chat(gateway, "bad-params", "dashboard error")
    _chat(gateway, ROUTE, "dashboard route")
    _wait_for_rows(url, 5)
    time.sleep(1)
    held = httpx.post(url + "/v1/analytics/sql", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json={
        "query": "SELECT count(), countIf(status = 'error'), sum(cost_usd) FROM requests FINAL"}).json()["rows"][0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(gateway.url + "/dashboard")  # through the ingress, as a user opens it
        page.fill("#key", ADMIN_KEY)
        page.click("#load")
        page.wait_for_selector("body[data-loaded]")
        page.wait_for_selector("#spend .main-svg")  # Plotly drew the chart
        shown = {name: page.inner_text(f"#total-{name}") for name in ("requests", "errors", "cost")}
        models = page.inner_text("#top-models")
        routes = page.inner_text("#top-routes")
        page.screenshot(path=str(logs / "dashboard.png"), full_page=True)
        browser.close()

    assert shown["requests"] == f"{held[0]:,}"
    assert shown["errors"] == f"{held[1]:,}"
    # the page rounds to a millionth a sum the rollup adds in another order than the raw table
    assert float(shown["cost"].lstrip("$")) == pytest.approx(held[2], abs=1.5e-6)
    assert "gpt-4o" in models
    assert ROUTE in routes
    assert (logs / "dashboard.png").stat().st_size > 10_000
