"""Caller keys sealed to their request, and the ingress's signature, with secret rotation."""

from __future__ import annotations

import hmac

import pytest

from infra.secrets import InvalidToken, ProviderKeySealer, RequestSigner, derive

REQUEST = {"request_id": "gw-1", "project": "proj-a", "key_id": "k1", "reply_topic": "gw.replies",
           "reply_partition": 2}


def test_a_sealed_key_opens_only_for_its_request_project_and_provider() -> None:
    sealer = ProviderKeySealer("secret")
    token = sealer.seal("sk-callers-own", "gw-1", "proj-a", "openai", expires_at_ms=2000)

    assert "sk-callers-own" not in token
    assert sealer.open(token, "gw-1", "proj-a", "openai", now_ms=1000) == "sk-callers-own"
    for other in (("gw-2", "proj-a", "openai"), ("gw-1", "proj-b", "openai"), ("gw-1", "proj-a", "anthropic")):
        with pytest.raises(InvalidToken, match="not sealed for this request"):
            sealer.open(token, *other, now_ms=1000)


def test_a_sealed_key_expires_with_its_request() -> None:
    sealer = ProviderKeySealer("secret")
    token = sealer.seal("sk-callers-own", "gw-1", "proj-a", "openai", expires_at_ms=2000)

    with pytest.raises(InvalidToken, match="expired"):
        sealer.open(token, "gw-1", "proj-a", "openai", now_ms=2001)


def test_rotation_accepts_the_previous_secret_and_seals_with_the_new_one() -> None:
    old = ProviderKeySealer("old-secret").seal("sk-x", "gw-1", "proj-a", "openai", expires_at_ms=2000)
    rotated = ProviderKeySealer("new-secret", previous=["old-secret"])

    assert rotated.open(old, "gw-1", "proj-a", "openai", now_ms=0) == "sk-x"
    with pytest.raises(InvalidToken):
        ProviderKeySealer("old-secret").open(rotated.seal("sk-y", "gw-1", "proj-a", "openai", 2000),
                                             "gw-1", "proj-a", "openai", now_ms=0)


def test_a_signature_covers_who_pays_and_where_the_answer_goes() -> None:
    signer = RequestSigner("secret")
    signature = signer.sign(REQUEST)

    assert signer.verify(REQUEST, signature)
    for field, value in (("project", "proj-b"), ("reply_topic", "evil"), ("reply_partition", 3), ("key_id", "k2")):
        assert not signer.verify({**REQUEST, field: value}, signature)
    assert not signer.verify(REQUEST, None)
    assert RequestSigner("new", previous=["secret"]).verify(REQUEST, signature)
    assert not RequestSigner("other").verify(REQUEST, signature)


def test_a_signature_is_hmac_sha256_of_the_signed_fields_so_instances_of_any_version_agree() -> None:
    """A rolling upgrade mixes ingresses and routers of two versions: the signature stays HMAC-SHA256 with the
    key derived for signing, over the same fields in the same order, whatever computes it."""
    key = derive("secret", "request-signature")
    message = "\x00".join(("gw-1", "proj-a", "k1", "gw.replies", "2")).encode()

    assert RequestSigner("secret").sign(REQUEST) == hmac.digest(key, message, "sha256").hex()
    assert RequestSigner("secret").sign(REQUEST) == RequestSigner("secret").sign(REQUEST)  # the state is reused
