"""The OpenAPI description of every public endpoint. The hot routes are served ahead of FastAPI
(`hot_path.py`), so FastAPI does not see them; their request bodies (the same pydantic models that
validate them) and their answers are added here, with the one error body every endpoint shares."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from ingress import bodies

_REF = "#/components/schemas/{model}"

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
                   "param": {"type": ["string", "null"]}}}}}

ANSWER = {"type": "object"}  # shapes per endpoint are OpenAI's; the README shows them
HOT_ROUTES: dict[str, tuple[type[BaseModel], str]] = {
    "/v1/gateway/chat": (bodies.NativeChat, "Chat in the gateway's native format (JSON, or SSE with stream)"),
    "/v1/chat/completions": (bodies.OpenAIChat, "OpenAI Chat Completions (JSON, or SSE with stream)"),
    "/v1/embeddings": (bodies.EmbeddingsBody, "OpenAI embeddings"),
    "/v1/images/generations": (bodies.ImagesBody, "OpenAI image generation"),
}
ERROR_STATUSES = ("400", "401", "404", "413", "429", "499", "502", "503", "504")


def error_response(description: str = "an OpenAI-shaped error") -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors() -> dict[str, Any]:
    return {status: error_response() for status in ERROR_STATUSES}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` describe the hot routes too (built once, then cached by FastAPI)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version="1", routes=app.routes)
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, (model, summary) in HOT_ROUTES.items():
            schema = model.model_json_schema(ref_template=_REF)
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
            spec.setdefault("paths", {})[path] = {"post": {
                "summary": summary, "operationId": model.__name__, "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": _REF.format(model=model.__name__)}}}},
                "responses": {"200": {"description": "the answer", "content": {
                    "application/json": {"schema": ANSWER}, "text/event-stream": {"schema": {"type": "string"}}}},
                    **_errors()},
            }}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
