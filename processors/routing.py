"""Model names to targets: which configured provider serves a model, under which upstream name, at what
price; and routes (virtual models, `processors/routes.py`) expanded into the targets to try, in order."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.config import GatewayConfig, RouteSpec, Settings
from processors.catalog import Catalog, ModelInfo, load_catalog
from processors.routes import RouteBook, RouteError, facts, holds, order

MAX_ROUTE_DEPTH = 4
ROUTE_HEADER = "gateway-route"  # "<route>;<strategy>", with the replies, to the x-gateway-route headers


@dataclass(frozen=True)
class Target:
    model: str
    provider: str
    upstream_model: str
    info: ModelInfo | None
    route: str | None = None  # the route that chose it
    strategy: str | None = None
    spec: RouteSpec | None = None  # its retry policy and hedge


class RouteTable:
    """Catalog defaults, overridden per model by the config's `models:` routes."""

    def __init__(self, config: GatewayConfig, catalog: Catalog, book: RouteBook | None = None) -> None:
        self.book = book or RouteBook(None)
        self._catalog = catalog.models
        self._rng = random.Random()
        self._enabled = {name: provider.enabled for name, provider in config.providers.items()}  # env read once
        self._key_envs = {name: provider.api_key_env for name, provider in config.providers.items()}
        self._targets: dict[str, Target] = {}
        for name, info in catalog.models.items():
            self._targets[name] = Target(name, info.provider, info.upstream_model or name, info)
        for name, route in config.models.items():
            info = catalog.models.get(name)
            upstream = route.upstream_model or (info.upstream_model if info else None) or name
            self._targets[name] = Target(name, route.provider, upstream, info)

    def known(self, model: str) -> bool:
        return model in self._targets or model in self.book.routes

    def target(self, model: str) -> Target | None:
        """A model's target; a route's first target (what an estimate before the call goes by)."""
        spec = self.book.routes.get(model)
        if spec is not None and spec.targets:
            first = spec.targets[0]
            return Target(first.label, first.provider, first.model, self._catalog.get(first.catalog or first.model),
                          model, spec.strategy, spec)
        return self._targets.get(model)

    def supports(self, model: str, capability: str) -> bool:
        """Whether the catalog says the model does this (chat, embeddings, images); unknown to it: yes. A
        route: whether one of its targets does."""
        spec = self.book.routes.get(model)
        if spec is not None:
            infos = [self._catalog.get(t.catalog or t.model) for t in spec.targets]
            return not infos or any(i is None or capability in i.capabilities for i in infos)
        target = self._targets.get(model)
        return target is None or target.info is None or capability in target.info.capabilities

    def plan(self, model: str, request: dict[str, Any], latency: Callable[[str, str], float | None],
             healthy: Callable[[str, str], bool], depth: int = 0) -> list[Target]:
        """The targets to try for a model or route, in order (a RouteError when a route cannot serve it)."""
        spec = self.book.routes.get(model)
        if spec is None:
            target = self._targets.get(model)
            return [target] if target is not None else []
        if depth >= MAX_ROUTE_DEPTH:
            raise RouteError(f"route {model!r} leads through more than {MAX_ROUTE_DEPTH} routes")
        if spec.strategy == "rules":
            seen = facts(request)
            then = next((rule.then for rule in spec.rules if holds(rule.when, seen)), spec.default)
            assert then is not None
            named = next((t for t in spec.targets if t.label == then), None)
            if named is None:
                return self.plan(then, request, latency, healthy, depth + 1)
            return [Target(named.label, named.provider, named.model, self._catalog.get(named.catalog or named.model),
                           model, "rules", spec)]
        choice = order(model, spec, request, self._catalog, latency, healthy, self._rng)
        return [Target(t.label, t.provider, t.model, info, model, choice.strategy, spec) for t, info in choice.targets]

    def servable(self, model: str, caller_keys: frozenset[str] = frozenset()) -> bool:
        """Known, and its provider is configured and has a key (its own, or one the caller brought)."""
        target = self._targets.get(model)
        if target is None:
            return False
        return self.provider_ready(target.provider, caller_keys)

    def provider_ready(self, provider: str, caller_keys: frozenset[str] = frozenset()) -> bool:
        enabled = self._enabled.get(provider)
        return enabled is not None and (enabled or provider in caller_keys)

    def why_not_ready(self, target: Target) -> str:
        """Why a route's target cannot answer: its provider to configure or the variable to set."""
        if target.provider not in self._enabled:
            return (f"route {target.route}: target {target.model} needs a provider named '{target.provider}' under "
                    "'providers' in the configuration")
        variable = self._key_envs.get(target.provider)
        return (f"route {target.route}: target {target.model} is served by provider '{target.provider}', enabled by "
                f"setting {variable}" if variable else f"provider '{target.provider}' is not enabled")

    def why_not_servable(self, model: str) -> str:
        """What would make a model answer: the provider to configure or the variable to set, and what
        answers now."""
        target = self._targets.get(model)
        if target is None:
            return f"the model {model} is unknown"
        if target.provider not in self._enabled:
            why = f"the model {model} needs a provider named '{target.provider}' under 'providers' in the configuration"
        else:
            variable = self._key_envs.get(target.provider)
            why = (f"the model {model} is served by provider '{target.provider}', which is enabled by setting "
                   f"{variable}" if variable else f"provider '{target.provider}' is not enabled")
        answering = [t.model for t in self.servable_models()]
        return why + (f"; models that answer now: {', '.join(answering[:5])}" if answering else "")

    def servable_models(self) -> list[Target]:
        return [t for name, t in sorted(self._targets.items()) if self.servable(name)]


def route_table(settings: Settings) -> RouteTable:
    """The catalog, the configuration's `models:` and the routes file (refused at start if it is bad)."""
    try:
        book = RouteBook(settings.routes_path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"gateway: routes file {settings.routes_path}: {exc}") from None
    return RouteTable(settings.config, load_catalog(settings.config.catalog), book)

