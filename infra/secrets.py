"""The gateway's secret and what is derived from it (HKDF-SHA256, one key per purpose):

- provider keys that callers bring with a request, sealed with AES-GCM before the request is produced and
  opened only by the router, for that call: the ciphertext is bound to the request (its id, project and
  provider are the associated data, so it cannot be replayed into another request) and expires with the
  request's deadline;
- the ingress's signature on each request it produces (HMAC-SHA256 over the fields that decide who pays
  and where the answer goes), which tells the router that a request came through the HTTP front door.

Rotation: `GATEWAY_SECRET` seals and signs; it and `GATEWAY_SECRET_PREVIOUS` (comma-separated) both open
and verify, so instances can be rolled one at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from infra.paths import home

SIGNATURE_HEADER = "gateway-signature"
_SALT = b"kafka-ai-gateway/v1"


class InvalidToken(Exception):
    """A sealed provider key that this gateway cannot open for this request (why is the message)."""


def derive(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode()).derive(secret.encode())


def local_secret() -> str:
    """The signing secret of a one-machine stack with no GATEWAY_SECRET: made once, kept in GATEWAY_HOME
    (mode 0600), shared by the processes `gateway up` starts."""
    path = home() / "internal-secret"
    if not path.exists():
        partial = path.with_suffix(".part")
        partial.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
        partial.chmod(0o600)
        partial.replace(path)
    return path.read_text().strip()


class ProviderKeySealer:
    def __init__(self, secret: str, previous: list[str] | None = None) -> None:
        self._seal = AESGCM(derive(secret, "provider-key"))
        self._open = [self._seal, *(AESGCM(derive(s, "provider-key")) for s in previous or ())]

    def seal(self, key: str, request_id: str, project: str, provider: str, expires_at_ms: int) -> str:
        nonce = os.urandom(12)
        sealed = self._seal.encrypt(nonce, struct.pack(">q", expires_at_ms) + key.encode(),
                                    _bound(request_id, project, provider))
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, request_id: str, project: str, provider: str, now_ms: int) -> str:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except ValueError:
            raise InvalidToken("not a sealed provider key") from None
        for cipher in self._open:
            try:
                plain = cipher.decrypt(raw[:12], raw[12:], _bound(request_id, project, provider))
            except InvalidTag:
                continue
            if struct.unpack(">q", plain[:8])[0] < now_ms:
                raise InvalidToken("the sealed provider key expired with its request")
            return plain[8:].decode()
        raise InvalidToken("not sealed for this request by this gateway's secret")


def _bound(request_id: str, project: str, provider: str) -> bytes:
    return "\x00".join((request_id, project, provider)).encode()


class RequestSigner:
    """Signs what a request may not change on its way from the ingress: id, project, key, reply address.

    Each key's HMAC state is made once and copied per message: `hmac.digest` looks the algorithm up in
    OpenSSL on every call, which on the request path (one signature in the ingress, one check in the
    router, caches cold at low load) cost 83-90 µs a call against 51-64 for a copy
    (bench/results/timeline-20261201.md)."""

    def __init__(self, secret: str, previous: list[str] | None = None) -> None:
        self._sign = _keyed(derive(secret, "request-signature"))
        self._verify = [self._sign, *(_keyed(derive(s, "request-signature")) for s in previous or ())]

    def sign(self, request: dict[str, Any]) -> str:
        return _hexdigest(self._sign, _signed(request))

    def verify(self, request: dict[str, Any], signature: str | None) -> bool:
        if not signature:
            return False
        message = _signed(request)
        return any(hmac.compare_digest(_hexdigest(keyed, message), signature) for keyed in self._verify)


def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def _hexdigest(keyed: hmac.HMAC, message: bytes) -> str:
    mac = keyed.copy()
    mac.update(message)
    return mac.hexdigest()


def _signed(request: dict[str, Any]) -> bytes:
    fields = (request["request_id"], request["project"], request["key_id"], request["reply_topic"],
              str(request["reply_partition"]))
    return "\x00".join(fields).encode()


def service_signature(secret: str, request: dict[str, Any]) -> str:
    """What a service that declares `secret_env` puts in a request's `gateway-signature` header: HMAC-SHA256,
    keyed by its secret as is, over the request's id, project, key id and reply topic joined by NUL, in hex
    (a few lines in any language)."""
    fields = (request["request_id"], request["project"], request["key_id"], request["reply_topic"])
    return hmac.new(secret.encode(), "\x00".join(fields).encode(), hashlib.sha256).hexdigest()
