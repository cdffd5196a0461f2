"""Bearer gateway keys: the key is looked up by its sha256 digest, and only a short digest prefix
(`key_id`) ever leaves this module, into events and logs."""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import key_digest
from ingress.errors import GatewayError


@dataclass(frozen=True)
class Caller:
    project: str
    key_id: str
    user: str | None = None
    team: str | None = None
    allowed_models: tuple[str, ...] = ()  # empty: every model
    admin: bool = False


def bearer_digest(authorization: str | None) -> str:
    """The SHA-256 of the bearer key; a missing or malformed header is a 401 saying so."""
    if not authorization:
        raise GatewayError(401, "authentication_error", "missing_api_key",
                           "missing gateway key: send 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError(401, "authentication_error", "invalid_api_key",
                           "malformed Authorization header: expected 'Bearer <key>'")
    return key_digest(token)


def key_id(digest: str) -> str:
    return "key_" + digest[:16]


INVALID_KEY = GatewayError(401, "authentication_error", "invalid_api_key", "invalid gateway key")
