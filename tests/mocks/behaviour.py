"""What every provider mock answers, decided on a provider-neutral view of the request, so the same
conversation gets the same answer from each provider's wire format.

- the model (or deployment) name steers failures: `...-fail-500`, `...-fail-429`, `...-fail-400`,
  `...-fail-401`, `...-stall-<seconds>`, `...-content-filter` (Azure), `...-chaos` (20% fail, 5% stall);
- with tools offered and no tool result yet, the model calls the first tool with arguments built from
  its JSON schema's required properties;
- after a tool result, it answers "The tool said: <result>";
- otherwise "Hello from the mock! You said: <last user text>", plus " I see 1 image(s)." when the
  last user turn carries images.

Streaming: one word per event; `...-tokens-<n>` answers n tokens instead, `...-delay-<ms>ms` waits
between tokens, `...-cut-after-<n>` breaks the stream after n tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Conversation:
    model: str
    last_user_text: str = ""
    images: int = 0
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, JSON schema)
    tool_result: str | None = None
    max_tokens: int | None = None
    prompt_words: int = 0


@dataclass(frozen=True)
class Answer:
    text: str = ""
    tool_name: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


def failure(model: str) -> int | None:
    """The HTTP status the model name asks for, if any. `...-chaos`: 10% 500, 10% 429 at random."""
    if model.endswith("-chaos"):
        draw = random.random()
        return 500 if draw < 0.10 else 429 if draw < 0.20 else None
    match = re.search(r"-fail-(\d{3})$", model)
    return int(match.group(1)) if match else None


_FIRST_CALL: dict[str, float] = {}


async def maybe_stall(model: str) -> None:
    """`...-stall-<seconds>`; `...-chaos`: 5% of calls stall 3 s (past a first-byte limit);
    `...-ms-<a>-then-<b>-after-<n>s`: a ms before answering until n seconds after that model's first call,
    b ms from then on (a target whose latency changes, for the `fastest` strategy)."""
    if model.endswith("-chaos") and random.random() < 0.05 / 0.80:  # 5% of all calls, of the 80% not failed
        await asyncio.sleep(3.0)
    if stall := re.search(r"-stall-(\d+(?:\.\d+)?)$", model):
        await asyncio.sleep(float(stall.group(1)))
    if change := re.search(r"-ms-(\d+)-then-(\d+)-after-(\d+)s$", model):
        first = _FIRST_CALL.setdefault(model, time.monotonic())
        before, after, seconds = (int(g) for g in change.groups())
        await asyncio.sleep((before if time.monotonic() - first < seconds else after) / 1000)


def _example(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    examples = {"string": "Paris", "number": 1.5, "integer": 1, "boolean": True}
    return {name: examples.get((properties.get(name) or {}).get("type", "string"), "x")
            for name in schema.get("required") or []}


def answer(conversation: Conversation) -> Answer:
    prompt_tokens = max(conversation.prompt_words, 1)
    if conversation.tools and conversation.tool_result is None:
        name, schema = conversation.tools[0]
        return Answer(tool_name=name, tool_args=_example(schema), prompt_tokens=prompt_tokens, completion_tokens=12)
    if conversation.tool_result is not None:
        text = f"The tool said: {conversation.tool_result}"
    else:
        text = f"Hello from the mock! You said: {conversation.last_user_text}"
        if conversation.images:
            text += f" I see {conversation.images} image(s)."
    words = text.split()
    truncated = conversation.max_tokens is not None and len(words) > conversation.max_tokens
    if truncated:
        words = words[: conversation.max_tokens]
    return Answer(text=" ".join(words), truncated=truncated, prompt_tokens=prompt_tokens,
                  completion_tokens=len(words))


def words(text: str) -> int:
    return len(text.split())


def vector(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit-free embedding of a text: the same text gets the same vector from every mock."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(dimensions)]


@dataclass(frozen=True)
class StreamPlan:
    tokens: int | None
    delay_s: float
    cut_after: int | None


def stream_plan(model: str) -> StreamPlan:
    tokens = re.search(r"-tokens-(\d+)", model)
    delay = re.search(r"-delay-(\d+)ms", model)
    cut = re.search(r"-cut-after-(\d+)", model)
    return StreamPlan(int(tokens.group(1)) if tokens else None, int(delay.group(1)) / 1000 if delay else 0.0,
                      int(cut.group(1)) if cut else None)


def stream_pieces(result: Answer, plan: StreamPlan) -> list[str]:
    """The text of an answer cut into the pieces a stream sends (one word each, spaces kept)."""
    if plan.tokens is not None:
        return [f"tok{i} " for i in range(plan.tokens)]
    words_ = result.text.split(" ")
    return [w + (" " if i < len(words_) - 1 else "") for i, w in enumerate(words_)] if result.text else []


class StreamCut(Exception):
    """Raised inside a mock's stream to break the connection mid-answer."""


async def paced(pieces: list[str], plan: StreamPlan) -> AsyncIterator[str]:
    for i, piece in enumerate(pieces):
        if plan.cut_after is not None and i == plan.cut_after:
            raise StreamCut(f"cut after {i} tokens")
        if plan.delay_s:
            await asyncio.sleep(plan.delay_s)
        yield piece
