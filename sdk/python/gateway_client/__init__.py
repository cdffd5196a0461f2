"""Python client for the Kafka AI gateway (the same surface as `@infrarix/gateway`)."""

from gateway_client.client import AsyncGateway, Gateway
from gateway_client.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    GatewayError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from gateway_client.types import ChatResponse, Embeddings, Model, StreamEvent, Usage

__all__ = [
    "APIConnectionError", "APITimeoutError", "AsyncGateway", "AuthenticationError", "BadRequestError",
    "ChatResponse", "Embeddings", "Gateway", "GatewayError", "InternalServerError", "Model", "NotFoundError",
    "PermissionDeniedError", "RateLimitError", "StreamEvent", "Usage",
]
