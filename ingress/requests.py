"""What the ingress makes of an HTTP request before it goes to Kafka: the body read within its limit, the
deadline, the caller's own provider keys sealed, and the request event itself."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from infra import secrets
from infra.config import Settings
from ingress import bodies
from ingress.auth import Caller
from ingress.bridge import KafkaBridge
from ingress.errors import GatewayError, invalid_request
from ingress.templates import TemplateStore, render
from processors.routing import RouteTable
from schemas.ids import random_id

TIMEOUT_HEADER = "x-gateway-timeout-ms"
META_HEADER = "x-gateway-meta-"
CACHE_HEADER = "x-gateway-cache"  # skip: neither read nor fill the cache; refresh: fill it, do not read
PROVIDER_KEY_HEADER = "x-provider-key-"


class RequestBuilder:
    def __init__(self, settings: Settings, routes: RouteTable, bridge: KafkaBridge, templates: TemplateStore) -> None:
        self._templates = templates
        self._limits = settings.config.ingress
        self._providers = settings.config.providers
        self._routes = routes
        self._bridge = bridge
        self._byok = secrets.ProviderKeySealer(settings.env.gateway_secret, settings.previous_secrets) \
            if settings.env.gateway_secret else None

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._limits.max_body_bytes:
            raise self._too_big()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._limits.max_body_bytes:
                raise self._too_big()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_big(self) -> GatewayError:
        return GatewayError(413, "invalid_request_error", "request_too_large",
                            f"request body is larger than {self._limits.max_body_bytes} bytes")

    def _timeout_s(self, request: Request) -> float:
        value = request.headers.get(TIMEOUT_HEADER)
        if value is None:
            return self._limits.request_timeout_s
        try:
            ms = float(value)
        except ValueError:
            ms = -1
        if not 0 < ms <= self._limits.max_timeout_s * 1000:
            raise invalid_request(f"{TIMEOUT_HEADER} must be a number of milliseconds in "
                                  f"(0, {int(self._limits.max_timeout_s * 1000)}]", "invalid_timeout")
        return ms / 1000

    @staticmethod
    def _cache_control(request: Request) -> str | None:
        value = request.headers.get(CACHE_HEADER)
        if value is not None and value not in ("skip", "refresh"):
            raise invalid_request(f"{CACHE_HEADER} is 'skip' or 'refresh', not {value!r}", "invalid_value",
                                  CACHE_HEADER)
        return value

    def _provider_keys(self, request: Request, event: dict[str, Any]) -> list[dict[str, str]]:
        """`x-provider-key-<provider>` headers: the caller's own key for one provider, sealed at once for
        this request only (its id, project and provider; it expires with the request's deadline)."""
        given = {name[len(PROVIDER_KEY_HEADER):]: value for name, value in request.headers.items()
                 if name.startswith(PROVIDER_KEY_HEADER)}
        if not given:
            return []
        if self._byok is None:
            raise invalid_request("this gateway does not accept provider keys from callers (no GATEWAY_SECRET)",
                                  "provider_keys_disabled")
        for provider in given:
            if provider not in self._providers:
                raise invalid_request(f"{PROVIDER_KEY_HEADER}{provider}: no provider named '{provider}'",
                                      "unknown_provider")
        return [{"provider": p, "ciphertext": self._byok.seal(key, event["request_id"], event["project"], p,
                                                         event["deadline_ms"])} for p, key in given.items()]

    def _apply_prompt(self, body: bodies.NativeChat | bodies.OpenAIChat, fields: dict[str, Any]) -> None:
        """A named prompt template's messages, rendered with the request's variables, before its own."""
        if body.prompt_id is None:
            if body.variables is not None or body.prompt_version is not None:
                raise invalid_request("'variables' and 'prompt_version' go with 'prompt_id'", "invalid_value",
                                      "prompt_id")
            if body.messages is None:
                raise invalid_request("missing required parameter: 'messages'", "missing_required_parameter",
                                      "messages")
            if not body.messages:
                raise invalid_request("'messages' must not be empty", "invalid_value", "messages")
            return
        template = self._templates.get(body.prompt_id, body.prompt_version)
        rendered = [{"role": m["role"], "content": m["content"], "name": None, "parts": [], "tool_calls": [],
                     "tool_call_id": None} for m in render(template, body.variables or {})]
        fields["messages"] = rendered + fields["messages"]
        fields["prompt_version"] = template["version"]

    def event(self, request: Request, caller: Caller, body: bodies.Body, capability: str
              ) -> tuple[dict[str, Any], float]:
        """The request record to produce, and its timeout in seconds."""
        fields = body.event_fields()
        if isinstance(body, bodies.NativeChat | bodies.OpenAIChat):
            self._apply_prompt(body, fields)
        for model in (fields["model"], *fields["fallback"]):
            if caller.allowed_models and model not in caller.allowed_models:
                raise GatewayError(403, "permission_error", "model_not_allowed",
                                   f"this key may use {', '.join(caller.allowed_models)}, not '{model}'", "model")
            if not self._routes.known(model):
                raise GatewayError(404, "invalid_request_error", "model_not_found",
                                   f"the model '{model}' does not exist", "model")
            if not self._routes.supports(model, capability):
                raise invalid_request(f"the model '{model}' does not support {capability}", "model_not_supported",
                                      "model")
        timeout = self._timeout_s(request)
        received = time.time_ns() // 1_000_000
        event = {
            "request_id": f"gw-{random_id()}",
            "project": caller.project,
            "key_id": caller.key_id,
            "received_at_ms": received,
            "deadline_ms": received + int(timeout * 1000),
            "reply_topic": self._bridge.reply_topic,
            "reply_partition": self._bridge.reply_partition,
            **fields,
        }
        if caller.user and not event.get("user"):  # a key issued for a user speaks for it
            event["user"] = caller.user
        event["team"] = caller.team
        event["cache_control"] = self._cache_control(request)
        if "metadata" in event:  # chat: x-gateway-meta-<key> headers join the body's metadata (route rules read it)
            event["metadata"] |= {name[len(META_HEADER):]: value for name, value in request.headers.items()
                                  if name.startswith(META_HEADER)}
        event["provider_keys"] = self._provider_keys(request, event)
        return event, timeout
