"""Errors carry what the gateway said: its OpenAI-shaped error body, the HTTP status and the request id."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        error = (body or {}).get("error") or {}
        self.code: str | None = error.get("code")
        self.type: str | None = error.get("type")
        self.param: str | None = error.get("param")
        self.request_id = request_id


class BadRequestError(GatewayError): ...
class AuthenticationError(GatewayError): ...
class PermissionDeniedError(GatewayError): ...
class NotFoundError(GatewayError): ...
class RateLimitError(GatewayError): ...
class InternalServerError(GatewayError): ...
class APIConnectionError(GatewayError):
    """The gateway could not be reached, or the connection broke: no status."""
class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


def error_for(status: int, body: dict[str, Any] | None, request_id: str | None) -> GatewayError:
    message = ((body or {}).get("error") or {}).get("message") or f"HTTP {status}"
    kind: type[GatewayError] = (
        BadRequestError if status in (400, 413, 422) else AuthenticationError if status == 401
        else PermissionDeniedError if status == 403 else NotFoundError if status == 404
        else RateLimitError if status == 429 else InternalServerError if status >= 500 else GatewayError)
    return kind(message, status, body, request_id)
