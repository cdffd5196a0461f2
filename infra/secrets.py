"""Provider keys that callers bring with a request: encrypted (Fernet) with the gateway's secret
(`GATEWAY_SECRET`) before the request is produced, decrypted only by the router for that one call."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["InvalidToken", "cipher"]


def cipher(secret: str) -> Fernet:
    """A Fernet cipher whose key is derived from the secret (any length), so every instance agrees."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))
