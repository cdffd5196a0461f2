"""Routes: virtual models (`smart`, `cheap`, `support-bot`) that a client names like any model, each with
targets and a strategy that orders them for one request. Pure, except `RouteBook`, which reads the routes
file and reads it again when it changes (a bad file is refused, naming the field, and the routes already
loaded keep serving).

Strategies order a route's targets; the handler then tries them in that order:
- `fallback`: as listed;
- `loadbalance`: a weighted random order, the targets whose circuit is open last;
- `cheapest`: by the request's expected cost (its prompt estimated, `max_tokens` or 512 out, catalog
  prices), only the targets that can serve it;
- `capability`: the same, and a request no target can serve is refused, saying what it needs;
- `fastest`: by the recent median time to first byte (`LatencyStats`, learned from the attempts topic),
  a target not measured yet first, and another one first now and then (`exploration`);
- `rules`: the first rule whose conditions all hold sends the request to a target, a route or a model.

The condition language (no `eval`): a condition is `field: value` (equal) or `field: {op: value}` with op
one of eq, ne, in, not_in, gt, gte, lt, lte, contains, matches (a regular expression). Fields: project,
team, user, model, stream, tools (bool), images (bool), prompt_tokens (estimated), complexity (low or
high: a long prompt, code, or words that ask for reasoning), and metadata.<key> (the request's
`metadata`, and `x-gateway-meta-<key>` headers).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infra.config import RoutesFile, RouteSpec, RouteTarget
from processors.catalog import ModelInfo, expected_cost_usd, expected_tokens, prompt_estimate

log = logging.getLogger("gateway.routes")
_REASONING = re.compile(r"\b(prove|derive|step by step|analy[sz]e|reason|explain why|optimi[sz]e|debug)\b", re.I)
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
    "gt": lambda a, b: a is not None and a > b, "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b, "lte": lambda a, b: a is not None and a <= b,
    "contains": lambda a, b: a is not None and b in a,
    "matches": lambda a, b: a is not None and re.search(b, str(a)) is not None,
}
FIELDS = ("project", "team", "user", "model", "stream", "tools", "images", "prompt_tokens", "complexity")


class RouteError(Exception):
    """A request a route cannot serve (`capability` with no fitting target, a rule loop)."""


class InvalidRoutes(ValueError):
    """Routes refused: `where` is the field (`routes.<name>.targets.0.provider`), `why` what is wrong with it."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def _text(request: dict[str, Any]) -> str:
    return " ".join((m.get("content") or "") for m in request.get("messages") or ())


def facts(request: dict[str, Any]) -> dict[str, Any]:
    """What conditions see of a request."""
    tokens = prompt_estimate(request)
    text = _text(request)
    complex_ = tokens > 500 or "```" in text or _REASONING.search(text) is not None
    return {"project": request.get("project"), "team": request.get("team"), "user": request.get("user"),
            "model": request.get("model"), "stream": bool(request.get("stream")), "tools": bool(request.get("tools")),
            "images": any(p.get("type") == "image_url" for m in request.get("messages") or ()
                          for p in m.get("parts") or ()),
            "prompt_tokens": tokens, "complexity": "high" if complex_ else "low",
            **{f"metadata.{k}": v for k, v in (request.get("metadata") or {}).items()}}


def check_condition(field: str, condition: Any) -> None:
    """Refuse (at load) a condition that could never be evaluated."""
    if field not in FIELDS and not field.startswith("metadata."):
        raise ValueError(f"unknown field {field!r}; use {', '.join(FIELDS)} or metadata.<key>")
    if isinstance(condition, dict):
        if len(condition) != 1 or next(iter(condition)) not in OPERATORS:
            raise ValueError(f"{field}: a condition is a value or one of {{{', '.join(OPERATORS)}: value}}")
        op, value = next(iter(condition.items()))
        if op == "matches":
            re.compile(value)


def holds(when: dict[str, Any], seen: dict[str, Any]) -> bool:
    for field, condition in when.items():
        value = seen.get(field)
        if isinstance(condition, dict):
            op, expected = next(iter(condition.items()))
            try:
                if not OPERATORS[op](value, expected):
                    return False
            except TypeError:
                return False
        elif value != condition:
            return False
    return True


def needs(request: dict[str, Any]) -> tuple[set[str], int]:
    """The capabilities a request needs and the context it fills (prompt plus what it may generate)."""
    wanted = {"chat"}
    if request.get("tools"):
        wanted.add("tools")
    if facts(request)["images"]:
        wanted.add("vision")
    if request.get("response_format_json"):
        wanted.add("json")
    return wanted, sum(expected_tokens(request))


def fits(info: ModelInfo | None, request: dict[str, Any]) -> bool:
    if info is None:
        return True  # not in the catalog: nothing known against it
    wanted, context = needs(request)
    return wanted <= set(info.capabilities) and context <= info.context_window


@dataclass(frozen=True)
class Choice:
    """A route's order for one request: its targets, each with its catalog entry."""

    route: str
    strategy: str
    targets: list[tuple[RouteTarget, ModelInfo | None]]


def order(name: str, spec: RouteSpec, request: dict[str, Any], catalog: dict[str, ModelInfo],
          latency: Callable[[str, str], float | None], healthy: Callable[[str, str], bool],
          rng: random.Random) -> Choice:
    targets = [(t, catalog.get(t.catalog or t.model)) for t in spec.targets]
    if spec.strategy == "loadbalance":
        keyed = sorted(targets, key=lambda ti: rng.random() ** (1 / ti[0].weight), reverse=True)
        targets = sorted(keyed, key=lambda ti: not healthy(ti[0].provider, ti[0].model))  # stable: order kept
    elif spec.strategy in ("cheapest", "capability"):
        fitting = [ti for ti in targets if fits(ti[1], request)]
        if not fitting and spec.strategy == "capability":
            wanted, context = needs(request)
            raise RouteError(f"no target of route {name!r} can serve this request (it needs {', '.join(sorted(wanted))}"
                             f" and a context of {context} tokens)")
        targets = sorted(fitting or targets,
                         key=lambda ti: math.inf if ti[1] is None else expected_cost_usd(ti[1], request))
    elif spec.strategy == "fastest":
        def median(ti: tuple[RouteTarget, ModelInfo | None]) -> float:
            measured = latency(ti[0].provider, ti[0].model)
            return -1.0 if measured is None else measured  # not measured yet: tried first
        targets = sorted(targets, key=median)
        if len(targets) > 1 and rng.random() < spec.exploration:
            explore = rng.randrange(1, len(targets))
            targets.insert(0, targets.pop(explore))
    return Choice(name, spec.strategy, targets)


class RouteBook:
    """The routes in force: the routes file's, read at start and again whenever it changes, and those set
    through the admin API (`processors/route_changes.py`), which take the place of the file's route of the
    same name until they are removed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.from_file: dict[str, RouteSpec] = {}
        self.from_api: dict[str, RouteSpec] = {}
        self.routes: dict[str, RouteSpec] = {}
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self.from_file = read(path)
            self._stamp = _stamp(path)
        self._merge()

    def set_from_api(self, name: str, spec: RouteSpec | None) -> None:
        if spec is None:
            self.from_api.pop(name, None)
        else:
            self.from_api[name] = spec
        self._merge()

    def _merge(self) -> None:
        self.routes = {**self.from_file, **self.from_api}

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed; True when new routes were taken."""
        if self.path is None:
            return False
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            log.error("routes file %s unreadable (%s); the loaded routes keep serving", self.path, exc.strerror)
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.from_file = read(self.path)
        except ValueError as exc:
            log.error("routes file %s refused; the loaded routes keep serving: %s", self.path, exc)
            return False
        self._merge()
        log.info("routes file %s loaded: %s", self.path, ", ".join(sorted(self.from_file)) or "no routes")
        return True


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size


def read(path: Path) -> dict[str, RouteSpec]:
    """A routes file, validated: a ValueError names the field that is wrong."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    return validated(raw)


def validated(raw: Any) -> dict[str, RouteSpec]:
    """Routes in the routes file's shape (`{"routes": {name: spec}}`), checked as a file is: InvalidRoutes
    names the field that is wrong."""
    try:
        routes = RoutesFile.model_validate(raw).routes
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRoutes(".".join(str(p) for p in first["loc"]), first["msg"]) from None
    for name, spec in routes.items():
        for i, rule in enumerate(spec.rules):
            for field, condition in rule.when.items():
                try:
                    check_condition(field, condition)
                except (ValueError, re.error) as exc:
                    raise InvalidRoutes(f"routes.{name}.rules.{i}.when.{field}", str(exc)) from None
    return routes
