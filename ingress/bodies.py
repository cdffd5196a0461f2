"""The request bodies the ingress accepts (native and OpenAI-compatible), validated straight from the
raw bytes by pydantic, and turned into a RequestReceived record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ingress.errors import GatewayError, invalid_request


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    stream: bool = False

    @field_validator("stream")
    @classmethod
    def _no_stream_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError("streaming is not supported yet; send stream=false")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def fallback_models(self) -> list[str]:
        return []

    def event_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fallback": self.fallback_models(),
            "messages": [{"role": m.role, "content": m.text(), "name": m.name} for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_list(),
            "seed": self.seed,
            "user": self.user,
        }


class NativeChat(_ChatBody):
    """`POST /v1/gateway/chat`: the gateway's own format, with an ordered `fallback` list of models."""

    fallback: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=10)

    def fallback_models(self) -> list[str]:
        return self.fallback


class OpenAIChat(_ChatBody):
    """`POST /v1/chat/completions`: OpenAI's Chat Completions body (the parameters supported so far)."""

    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Literal[1] = 1

    def event_fields(self) -> dict[str, Any]:
        fields = super().event_fields()
        if fields["max_tokens"] is None:
            fields["max_tokens"] = self.max_completion_tokens
        return fields


def parse(model: type[_ChatBody], raw: bytes) -> _ChatBody:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _as_client_error(exc) from None


def _as_client_error(exc: ValidationError) -> GatewayError:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "json_invalid":
        return invalid_request(f"request body is not valid JSON: {first['msg']}", "invalid_json")
    if first["type"] == "extra_forbidden":
        return invalid_request(f"unsupported parameter: '{where}'", "unsupported_parameter", where)
    if first["type"] == "model_type" and not where:
        return invalid_request("request body must be a JSON object", "invalid_json")
    if first["type"] == "missing":
        return invalid_request(f"missing required parameter: '{where}'", "missing_required_parameter", where)
    return invalid_request(f"invalid value for '{where}': {first['msg']}", "invalid_value", where or None)
