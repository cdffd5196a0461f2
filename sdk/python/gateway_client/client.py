"""`Gateway` (sync) and `AsyncGateway`: chat with failover, a native event stream, embeddings, models;
typed answers, typed errors, and retries with backoff on network errors and 429/5xx honouring
`retry-after`. INFRARIX_KEY and INFRARIX_BASE_URL are read by default."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from gateway_client._core import Settings, SSEParser, backoff_s, chat_body, failure, retryable
from gateway_client.errors import APIConnectionError, APITimeoutError
from gateway_client.types import ChatResponse, Embeddings, Model, StreamEvent


class Gateway:
    def __init__(self, api_key: str | None = None, base_url: str | None = None, timeout: float = 60.0,
                 max_retries: int = 2) -> None:
        self.settings = Settings.of(api_key, base_url, timeout, max_retries)
        self._http = httpx.Client(base_url=self.settings.base_url, headers=self.settings.headers(), timeout=timeout)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def chat(self, **params: Any) -> ChatResponse:
        """`model`, `messages`, and any of the native API's fields (`fallback`, `max_tokens`, `tools`, ...)."""
        return ChatResponse.of(self._send("POST", "/v1/gateway/chat", chat_body(params, False)).json())

    def chat_stream(self, **params: Any) -> Iterator[StreamEvent]:
        """The native events as they come; leaving the loop early closes the connection, and the gateway
        cancels the provider call."""
        request = self._http.build_request("POST", "/v1/gateway/chat", json=chat_body(params, True))
        response = self._with_retries(lambda: self._http.send(request, stream=True))
        parser = SSEParser()
        try:
            for line in response.iter_lines():
                for event in parser.feed([line]):
                    yield event
                    if event.type in ("end", "error"):
                        return
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"the stream broke: {exc}") from exc
        finally:
            response.close()

    def embeddings(self, model: str, input: str | list[str], **params: Any) -> Embeddings:
        return Embeddings.of(self._send("POST", "/v1/embeddings", {"model": model, "input": input, **params}).json())

    def models(self) -> list[Model]:
        return [Model(m["id"], m["owned_by"], m["created"]) for m in self._send("GET", "/v1/models").json()["data"]]

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self._with_retries(lambda: self._http.request(method, path, json=body))

    def _with_retries(self, call: Any) -> httpx.Response:
        for attempt in range(self.settings.max_retries + 1):
            last = attempt == self.settings.max_retries
            try:
                response: httpx.Response = call()
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"no answer within {self.settings.timeout} s") from exc
            except httpx.TransportError as exc:
                if last:
                    raise APIConnectionError(f"cannot reach the gateway at {self.settings.base_url}: {exc}") from exc
                time.sleep(backoff_s(attempt, None))
                continue
            if response.is_success:
                return response
            response.read()
            if retryable(response.status_code) and not last:
                response.close()
                time.sleep(backoff_s(attempt, response.headers.get("retry-after")))
                continue
            raise failure(response)
        raise AssertionError("unreachable")


class AsyncGateway:
    def __init__(self, api_key: str | None = None, base_url: str | None = None, timeout: float = 60.0,
                 max_retries: int = 2) -> None:
        self.settings = Settings.of(api_key, base_url, timeout, max_retries)
        self._http = httpx.AsyncClient(base_url=self.settings.base_url, headers=self.settings.headers(),
                                       timeout=timeout)

    async def __aenter__(self) -> AsyncGateway:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, **params: Any) -> ChatResponse:
        return ChatResponse.of((await self._send("POST", "/v1/gateway/chat", chat_body(params, False))).json())

    async def chat_stream(self, **params: Any) -> AsyncIterator[StreamEvent]:
        request = self._http.build_request("POST", "/v1/gateway/chat", json=chat_body(params, True))
        response = await self._with_retries(lambda: self._http.send(request, stream=True))
        parser = SSEParser()
        try:
            async for line in response.aiter_lines():
                for event in parser.feed([line]):
                    yield event
                    if event.type in ("end", "error"):
                        return
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"the stream broke: {exc}") from exc
        finally:
            await response.aclose()

    async def embeddings(self, model: str, input: str | list[str], **params: Any) -> Embeddings:
        response = await self._send("POST", "/v1/embeddings", {"model": model, "input": input, **params})
        return Embeddings.of(response.json())

    async def models(self) -> list[Model]:
        data = (await self._send("GET", "/v1/models")).json()["data"]
        return [Model(m["id"], m["owned_by"], m["created"]) for m in data]

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self._with_retries(lambda: self._http.request(method, path, json=body))

    async def _with_retries(self, call: Any) -> httpx.Response:
        for attempt in range(self.settings.max_retries + 1):
            last = attempt == self.settings.max_retries
            try:
                response: httpx.Response = await call()
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"no answer within {self.settings.timeout} s") from exc
            except httpx.TransportError as exc:
                if last:
                    raise APIConnectionError(f"cannot reach the gateway at {self.settings.base_url}: {exc}") from exc
                await asyncio.sleep(backoff_s(attempt, None))
                continue
            if response.is_success:
                return response
            await response.aread()
            if retryable(response.status_code) and not last:
                await response.aclose()
                await asyncio.sleep(backoff_s(attempt, response.headers.get("retry-after")))
                continue
            raise failure(response)
        raise AssertionError("unreachable")
