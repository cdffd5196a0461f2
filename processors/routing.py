"""Model names to routes: which configured provider serves a model, under which upstream name, at what price."""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import GatewayConfig
from processors.catalog import Catalog, ModelInfo


@dataclass(frozen=True)
class Target:
    model: str
    provider: str
    upstream_model: str
    info: ModelInfo | None


class RouteTable:
    """Catalog defaults, overridden per model by the config's `models:` routes."""

    def __init__(self, config: GatewayConfig, catalog: Catalog) -> None:
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
        return model in self._targets

    def target(self, model: str) -> Target | None:
        return self._targets.get(model)

    def supports(self, model: str, capability: str) -> bool:
        """Whether the catalog says the model does this (chat, embeddings, images); unknown to it: yes."""
        target = self._targets.get(model)
        return target is None or target.info is None or capability in target.info.capabilities

    def servable(self, model: str, caller_keys: frozenset[str] = frozenset()) -> bool:
        """Known, and its provider is configured and has a key (its own, or one the caller brought)."""
        target = self._targets.get(model)
        if target is None:
            return False
        enabled = self._enabled.get(target.provider)
        return enabled is not None and (enabled or target.provider in caller_keys)

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
