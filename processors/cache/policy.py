"""What the cache may do for one chat request, decided the same way by every router (pure):

- the mode: the request's `cache_mode`, else the configured default for its model; `cache_control`
  `skip` turns it off, `refresh` fills without reading;
- the scope a hit must share: project, model, every parameter that changes the answer, and the
  conversation before its last message. A hit never crosses it (so never crosses projects);
- the exact key: the scope and the last message;
- the text a semantic lookup compares: the last message, when it is a user's plain text and nothing
  makes a paraphrase's answer wrong (tools, a `seed`, a temperature above the limit, unless configured).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from infra.config import Cache

_WORD = re.compile(r"[A-Za-z0-9]+")
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion first second third fourth fifth sixth seventh eighth ninth tenth half quarter double triple "
    "ii iii iv vi vii viii ix xi xii".split())

# Everything in a chat request that changes what the model answers (not: stream, user, fallback, keys).
ANSWER_CHANGING = ("max_tokens", "temperature", "top_p", "stop", "seed", "tools", "tool_choice",
                   "parallel_tool_calls", "response_format_json")


@dataclass(frozen=True)
class CachePlan:
    mode: str  # exact or semantic
    read: bool  # False: refresh (the answer is filled, not looked up)
    scope: str
    exact_key: str
    prompt: str | None  # None: no semantic lookup or fill for this request
    ttl_s: int
    threshold: float


def _digest(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _plain_user_text(message: dict[str, Any]) -> str | None:
    if message.get("role") != "user" or message.get("tool_calls") or message.get("tool_call_id"):
        return None
    parts = message.get("parts") or ()
    if any(p.get("type") != "text" for p in parts):
        return None
    text = message.get("content") or "".join(p.get("text") or "" for p in parts)
    return text.strip() or None


def semantic_allowed(request: dict[str, Any], config: Cache) -> bool:
    if request.get("tools") and not config.semantic_with_tools:
        return False
    if request.get("seed") is not None and not config.semantic_with_seed:
        return False
    return (request.get("temperature") or 0.0) <= config.max_temperature


def plan(request: dict[str, Any], config: Cache) -> CachePlan | None:
    """None: the cache has nothing to do with this request."""
    messages = request.get("messages")
    if not messages or request.get("cache_control") == "skip":
        return None
    mode = request.get("cache_mode") or config.mode_for(request["model"])
    if mode == "off":
        return None
    scope = _digest(request["project"], request["model"], [request.get(k) for k in ANSWER_CHANGING], messages[:-1])
    prompt = _plain_user_text(messages[-1]) if mode == "semantic" and semantic_allowed(request, config) else None
    return CachePlan(mode, request.get("cache_control") != "refresh", scope, _digest(scope, messages[-1]), prompt,
                     request.get("cache_ttl_s") or config.ttl_s, request.get("cache_threshold") or config.threshold)


def _numbers(words: list[str]) -> list[str]:
    return sorted(w for w in words if w in _NUMBER_WORDS or any(c.isdigit() for c in w))


def compatible(prompt: str, candidate: str) -> bool:
    """Whether a semantic neighbour may answer this prompt: embeddings place "10 miles to km" next to
    "10 km to miles" and "the 2018 World Cup" next to "the 2014 one", so the numbers (digits, number
    words, ordinals) must be the same, and the same words in another order are another question."""
    words = [w.lower() for w in _WORD.findall(prompt)]
    other = [w.lower() for w in _WORD.findall(candidate)]
    if _numbers(words) != _numbers(other):
        return False
    return words == other or sorted(words) != sorted(other)
