"""The request bodies the ingress accepts (native and OpenAI-compatible), validated straight from the
raw bytes by pydantic, and turned into the fields of a RequestReceived record.

OpenAI's Chat Completions format is the lingua franca; the native format carries the same fields plus
an ordered `fallback` list. A parameter the gateway does not support is refused with a 400 naming it,
never dropped silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ingress.errors import GatewayError, invalid_request

# Integers travel as Avro `int` / `long`: larger ones are the client's 400, not an encoder's 500.
INT32_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _json_text(value: Any, where: str) -> str:
    """A JSON schema the caller sent, as text for the event; what JSON parses but cannot be written back
    (an integer beyond 64 bits) is the caller's 400."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise invalid_request(f"invalid value for '{where}': {exc}", "invalid_value", where) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Body):
    name: str
    arguments: str


class ToolCall(_Body):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Part] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a message with role '{self.role}' needs 'content'")
        return self

    def event(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        content: str | None = None
        if isinstance(self.content, str):
            content = self.content
        elif self.content is not None:
            for part in self.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text, "image_url": None, "detail": None})
                else:
                    parts.append({"type": "image_url", "text": None, "image_url": part.image_url.url,
                                  "detail": part.image_url.detail})
        return {
            "role": self.role, "content": content, "name": self.name, "parts": parts,
            "tool_calls": [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                           for c in self.tool_calls or ()],
            "tool_call_id": self.tool_call_id,
        }


class FunctionDefinition(_Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(_Body):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class CacheOptions(_Body):
    """The gateway's cache for this request (default: the configuration's for the model)."""

    mode: Literal["exact", "semantic", "off"] | None = None
    ttl_s: Annotated[int, Field(gt=0, le=7 * 86400)] | None = None
    threshold: Annotated[float, Field(gt=0, le=1)] | None = None


class _ChatBody(_Body):
    model: str = Field(min_length=1)
    messages: list[Message] | None = None  # may be left out when a prompt template makes them
    prompt_id: str | None = Field(None, min_length=1)
    prompt_version: Int32 | None = None
    variables: dict[str, str | int | float | bool] | None = None
    max_tokens: Int32 | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: Int64 | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    cache: CacheOptions | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=16)
    fallback: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=10)

    def fallback_models(self) -> list[str]:
        return self.fallback

    def event_fields(self) -> dict[str, Any]:
        choice = self.tool_choice
        return {
            "model": self.model,
            "fallback": self.fallback_models(),
            "messages": [m.event() for m in self.messages or ()],
            "prompt_id": self.prompt_id,
            "prompt_version": self.prompt_version,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop or [],
            "seed": self.seed,
            "user": self.user,
            "tools": [{"name": t.function.name, "description": t.function.description,
                       "parameters_json": _json_text(t.function.parameters, f"tools.{i}.function.parameters")
                       if t.function.parameters is not None else None,
                       "strict": t.function.strict} for i, t in enumerate(self.tools or ())],
            "tool_choice": f"function:{choice.function.name}" if isinstance(choice, NamedToolChoice) else choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format_json": self.response_format.model_dump_json(by_alias=True, exclude_none=True)
            if self.response_format else None,
            "stream": self.stream,
            "include_usage": self.include_usage(),
            "cache_mode": self.cache.mode if self.cache else None,
            "cache_ttl_s": self.cache.ttl_s if self.cache else None,
            "cache_threshold": self.cache.threshold if self.cache else None,
            "metadata": dict(self.metadata or {}),
        }

    def include_usage(self) -> bool:
        return True


class NativeChat(_ChatBody):
    """`POST /v1/gateway/chat`: the gateway's own format (an ordered `fallback` list of models, which the
    OpenAI-compatible body also takes, through the SDK's `extra_body`)."""


class StreamOptions(_Body):
    include_usage: bool = False


class OpenAIChat(_ChatBody):
    """`POST /v1/chat/completions`: OpenAI's Chat Completions body."""

    max_completion_tokens: Int32 | None = None
    n: Literal[1] = 1
    stream_options: StreamOptions | None = None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def event_fields(self) -> dict[str, Any]:
        fields = super().event_fields()
        if fields["max_tokens"] is None:
            fields["max_tokens"] = self.max_completion_tokens
        return fields


class EmbeddingsBody(_Body):
    """`POST /v1/embeddings`: OpenAI's body; `input` a string or a list of strings."""

    model: str = Field(min_length=1)
    input: str | list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Int32 | None = None
    user: str | None = None

    def event_fields(self) -> dict[str, Any]:
        return {"model": self.model, "fallback": [], "input": [self.input] if isinstance(self.input, str)
                else self.input, "dimensions": self.dimensions, "user": self.user}


class ImagesBody(_Body):
    """`POST /v1/images/generations`: OpenAI's body."""

    model: str = "dall-e-3"
    prompt: str = Field(min_length=1)
    n: Annotated[int, Field(ge=1, le=10)] = 1
    size: Literal["256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536",
                  "auto"] | None = None
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: str | None = None

    def event_fields(self) -> dict[str, Any]:
        return {"model": self.model, "fallback": [], "prompt": self.prompt, "n": self.n, "size": self.size,
                "quality": self.quality, "response_format": self.response_format, "user": self.user}


Body = _ChatBody | EmbeddingsBody | ImagesBody


def parse(model: type[Body], raw: bytes) -> Body:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise as_client_error(exc) from None


def as_client_error(exc: ValidationError) -> GatewayError:
    first = exc.errors(include_url=False)[0]
    # Drop pydantic's union-branch tags (messages.0.content.str) from the location a client sees.
    where = ".".join(str(p) for p in first["loc"] if p not in ("str", "list[tagged-union[TextPart,ImagePart]]"))
    if first["type"] == "json_invalid":
        return invalid_request(f"request body is not valid JSON: {first['msg']}", "invalid_json")
    if first["type"] == "extra_forbidden":
        return invalid_request(f"unsupported parameter: '{where}'", "unsupported_parameter", where)
    if first["type"] == "model_type" and not where:
        return invalid_request("request body must be a JSON object", "invalid_json")
    if first["type"] == "missing":
        return invalid_request(f"missing required parameter: '{where}'", "missing_required_parameter", where)
    return invalid_request(f"invalid value for '{where}': {first['msg']}", "invalid_value", where or None)
