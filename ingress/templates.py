"""Prompt templates: named, versioned message lists whose contents are Jinja2 templates, rendered in
Jinja2's sandbox (no attribute access to Python internals, no `str.format` on user input). They live as
`PromptTemplateChanged` events on the compacted `templates` topic, a view of the log every ingress
folds. A request names `prompt_id` (and a `prompt_version`, else the latest published one) with
`variables`; the rendered messages come first, the request's own messages after them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from infra.config import Settings
from infra.log_view import Change, LogView
from ingress.errors import GatewayError, invalid_request

EVENT = "PromptTemplateChanged"
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass
class Templates:
    versions: dict[str, dict[int, dict[str, Any]]]


def fold_templates(templates: Templates, change: Change) -> None:
    if change.record is not None:
        templates.versions.setdefault(change.record["name"], {})[change.record["version"]] = change.record


def variables_of(messages: list[dict[str, str]]) -> list[str]:
    """The variables a message list's templates use; a template that does not parse is a 400 naming it."""
    names: set[str] = set()
    for i, message in enumerate(messages):
        try:
            names |= meta.find_undeclared_variables(_ENV.parse(message["content"]))
        except TemplateSyntaxError as exc:
            raise invalid_request(f"messages[{i}].content is not a valid template: {exc.message}", "invalid_value",
                                  f"messages[{i}].content") from None
    return sorted(names)


def render(template: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    declared = set(template["variables"])
    missing, extra = sorted(declared - set(values)), sorted(set(values) - declared)
    if missing:
        raise invalid_request(f"prompt {template['name']} v{template['version']} needs variables "
                              f"{', '.join(missing)}", "missing_required_parameter", f"variables.{missing[0]}")
    if extra:
        raise invalid_request(f"prompt {template['name']} v{template['version']} has no variables "
                              f"{', '.join(extra)}", "invalid_value", f"variables.{extra[0]}")
    try:
        return [{"role": m["role"], "content": _ENV.from_string(m["content"]).render(**values)}
                for m in orjson.loads(template["messages_json"])]
    except (UndefinedError, SecurityError) as exc:
        raise invalid_request(f"prompt {template['name']} could not be rendered: {exc}", "invalid_value",
                              "variables") from None


class TemplateStore:
    def __init__(self, settings: Settings) -> None:
        self._view: LogView[Templates] = LogView(settings.bootstrap_servers, settings.topics.templates,
                                                 fold_templates, Templates({}), settings.config.kafka)

    async def start(self) -> None:
        await self._view.start()

    async def stop(self) -> None:
        await self._view.stop()

    def get(self, name: str, version: int | None) -> dict[str, Any]:
        versions = self._view.state.versions.get(name) or {}
        if version is not None:
            template = versions.get(version)
        else:
            published = [v for v, t in versions.items() if t["published"]]
            template = versions[max(published)] if published else None
        if template is None or (version is None and not template["published"]):
            which = f"{name} v{version}" if version is not None else f"{name} (no published version)"
            raise GatewayError(404, "invalid_request_error", "prompt_not_found", f"no prompt template {which}",
                               "prompt_id")
        return template

    def list(self) -> list[dict[str, Any]]:
        return [t for versions in self._view.state.versions.values() for t in versions.values()]

    async def add(self, name: str, messages: list[dict[str, str]], published: bool) -> dict[str, Any]:
        variables = variables_of(messages)
        version = max(self._view.state.versions.get(name, {}), default=0) + 1
        now = time.time_ns() // 1_000_000
        record = {"name": name, "version": version, "messages_json": orjson.dumps(messages).decode(),
                  "variables": variables, "published": published, "created_at_ms": now, "changed_at_ms": now}
        await self._view.publish(f"{name}:{version}".encode(), EVENT, record)
        return record

    async def publish(self, name: str, version: int, published: bool) -> dict[str, Any]:
        record = {**self.get(name, version), "published": published, "changed_at_ms": time.time_ns() // 1_000_000}
        await self._view.publish(f"{name}:{version}".encode(), EVENT, record)
        return record
