"""The client SDKs against a running gateway: `@infrarix/gateway` built, packed and installed into a
scratch project the way a user would, then its node:test suite; and the Python client, sync and async.
Each: the product page's snippet, a stream, a cancelled stream, an error, a retry after a 429."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gateway_client import AsyncGateway, BadRequestError, NotFoundError, RateLimitError
from gateway_client import Gateway as Client

from tests.conftest import (
    GATEWAY_KEY,
    OTHER_PROJECT_KEY,
    Gateway,
    start_gateway,
    write_config,
)

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"


@pytest.fixture(scope="module")
def gateway_for_sdks(bootstrap: str, openai_mock: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Gateway]:
    """proj-b's key is limited to one request a second (a real 429 with retry-after)."""
    config = write_config(tmp_path_factory.mktemp("sdks") / "gateway.yaml", openai_mock)
    raw = yaml.safe_load(config.read_text())
    raw["limits"] = [{"scope": "project", "project": "proj-b", "requests_per_minute": 60, "burst": 1}]
    config.write_text(yaml.safe_dump(raw))
    gateway = start_gateway(bootstrap, config, logs)
    time.sleep(2)  # the gatekeeper takes its partitions
    yield gateway
    gateway.stop()


def _cancelled_upstream(gateway: Gateway, request_id: str) -> None:
    usage = gateway.events(gateway.topics.usage, request_id)[0]
    assert usage["status"] == "error" and usage["error_code"] == "client_disconnected"
    assert usage["completion_tokens"] < 300  # the provider call was cut, not run to its end


def test_the_js_package_installed_from_its_tarball(gateway_for_sdks: Gateway, tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "node and npm are needed (the Makefile installs the package's dev dependencies)"
    subprocess.run([npm, "run", "build"], cwd=SDK, check=True, capture_output=True)
    packed = subprocess.run([npm, "pack", "--pack-destination", str(tmp_path)], cwd=SDK, check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    project = tmp_path / "scratch"
    project.mkdir()
    (project / "package.json").write_text('{"name": "scratch", "private": true, "type": "module"}\n')
    subprocess.run([npm, "install", "--offline", "--no-audit", "--no-fund", str(tmp_path / packed)], cwd=project,
                   check=True, capture_output=True)
    shutil.copy(SDK / "test" / "sdk.test.mjs", project)
    cancelled = tmp_path / "cancelled-id"
    run = subprocess.run(["node", "--test", "sdk.test.mjs"], cwd=project, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "INFRARIX_KEY": GATEWAY_KEY,
                                           "INFRARIX_BASE_URL": gateway_for_sdks.url,
                                           "LIMITED_KEY": OTHER_PROJECT_KEY, "CANCELLED_ID_FILE": str(cancelled)})

    assert run.returncode == 0, run.stdout + run.stderr
    assert "# pass 7" in run.stdout and "# fail 0" in run.stdout
    assert "Cost: $0.0" in run.stdout
    _cancelled_upstream(gateway_for_sdks, cancelled.read_text())


def test_the_python_client(gateway_for_sdks: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRARIX_KEY", GATEWAY_KEY)
    monkeypatch.setenv("INFRARIX_BASE_URL", gateway_for_sdks.url)
    with Client() as gw:
        response = gw.chat(model="gpt-4o", fallback=["claude-sonnet-4-20250514"],
                           messages=[{"role": "user", "content": "Hello!"}])
        assert response.content == "Hello from the mock! You said: Hello!" and response.usage.cost_usd > 0

        events = list(gw.chat_stream(model="gpt-4o", messages=[{"role": "user", "content": "stream me"}]))
        assert events[0].type == "start" and events[-1].type == "end" and events[-1].usage.cost_usd > 0
        assert "".join(e.content for e in events if e.type == "delta") == "Hello from the mock! You said: stream me"

        started = time.monotonic()
        stream = gw.chat_stream(model="long-stream", messages=[{"role": "user", "content": "go on"}])
        first = next(stream)
        for _ in range(5):
            next(stream)
        stream.close()  # leaving early closes the connection
        assert time.monotonic() - started < 5
        _cancelled_upstream(gateway_for_sdks, first.data["id"])

        with pytest.raises(NotFoundError) as missing:
            gw.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        assert (missing.value.status, missing.value.code, missing.value.param) == (404, "model_not_found", "model")
        with pytest.raises(BadRequestError) as refused:
            gw.chat(model="bad-params", messages=[{"role": "user", "content": "x"}])
        assert refused.value.code == "upstream_bad_request" and (refused.value.request_id or "").startswith("gw-")

        assert [v for v in gw.embeddings("text-embedding-3-small", ["a", "b"]).vectors if v]
        assert "gpt-4o" in {m.id for m in gw.models()}

    with Client(api_key=OTHER_PROJECT_KEY, max_retries=3) as limited:
        limited.chat(model="gpt-4o", messages=[{"role": "user", "content": "limited"}])
        started = time.monotonic()
        assert limited.chat(model="gpt-4o", messages=[{"role": "user", "content": "again"}]).content.endswith("again")
        assert time.monotonic() - started >= 0.9  # a 429, its retry-after waited out, then answered
    with Client(api_key=OTHER_PROJECT_KEY, max_retries=0) as impatient, pytest.raises(RateLimitError):
        impatient.chat(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_the_async_python_client(gateway_for_sdks: Gateway) -> None:
    async def run() -> None:
        async with AsyncGateway(api_key=GATEWAY_KEY, base_url=gateway_for_sdks.url) as gw:
            response = await gw.chat(model="gpt-4o", messages=[{"role": "user", "content": "async"}])
            assert response.content == "Hello from the mock! You said: async"
            types = [event.type async for event in gw.chat_stream(
                model="gpt-4o", messages=[{"role": "user", "content": "async stream"}])]
            assert types[0] == "start" and types[-1] == "end" and "delta" in types
            with pytest.raises(NotFoundError):
                await gw.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    asyncio.run(run())
