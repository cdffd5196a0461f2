"""OAuth 2.0 client credentials (RFC 6749, section 4.4) for Kafka's SASL/OAUTHBEARER: a token from the identity
provider's token endpoint, the client authenticated with HTTP Basic, kept until four fifths of its lifetime
have passed and shared by every Kafka client of the process. A refusal names the endpoint and its answer."""

from __future__ import annotations

import os
import time
from functools import cache
from urllib.parse import quote_plus

import aiohttp
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError

from infra.config import Kafka

LIFETIME_WITHOUT_EXPIRY_S = 300.0  # a token whose answer says nothing of its lifetime is taken again after this


class TokenRefused(KafkaError):
    """No token: Kafka cannot be reached with these credentials (at start a clear exit, later a reconnection
    that is tried again, as for any Kafka error)."""


class ClientCredentials(AbstractTokenProvider):
    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        self._url = token_url
        # RFC 6749, section 2.3.1: both form-encoded before they go into the Basic header
        self._auth = aiohttp.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
        self._form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        self._token: str | None = None
        self._renew_at = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() >= self._renew_at:
            token, lifetime_s = await self._fetch()
            self._token, self._renew_at = token, time.monotonic() + 0.8 * lifetime_s
        return self._token

    async def _fetch(self) -> tuple[str, float]:
        # A session per fetch: a token is taken every few minutes, from whichever event loop asks.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                session.post(self._url, data=self._form, auth=self._auth) as response:
            text = await response.text()
            if response.status != 200:
                raise TokenRefused(f"the token endpoint {self._url} answered {response.status}: {text[:200]}")
            try:
                body = await response.json(content_type=None)
                return str(body["access_token"]), float(body.get("expires_in") or LIFETIME_WITHOUT_EXPIRY_S)
            except (ValueError, KeyError, TypeError) as exc:
                raise TokenRefused(f"the token endpoint {self._url} answered without an access_token") from exc


@cache
def _shared(token_url: str, client_id: str, client_secret: str, scope: str | None) -> ClientCredentials:
    return ClientCredentials(token_url, client_id, client_secret, scope)


def tokens_for(kafka: Kafka) -> ClientCredentials:
    """The process's token source for these settings (the configuration checked that the variables are set)."""
    assert kafka.oauth_token_url and kafka.oauth_client_id_env and kafka.oauth_client_secret_env
    return _shared(kafka.oauth_token_url, os.environ[kafka.oauth_client_id_env],
                   os.environ[kafka.oauth_client_secret_env], kafka.oauth_scope)
