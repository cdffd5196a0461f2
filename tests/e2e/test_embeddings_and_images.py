"""Embeddings and images through Kafka: one response shape whichever provider served them."""

from __future__ import annotations

import base64
import math
from typing import Any

import openai
import pytest

from tests.conftest import GATEWAY_KEY, Gateway
from tests.mocks.behaviour import vector

TEXTS = ["The sea is calm tonight.", "A storm is coming."]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


@pytest.mark.parametrize(("model", "provider"), [
    ("text-embedding-3-small", "openai"),
    ("azure-text-embedding-3-small", "azure"),
])
def test_embeddings_from_openai_and_azure_in_the_same_shape(providers_gateway: Gateway, model: str,
                                                            provider: str) -> None:
    response = sdk(providers_gateway).embeddings.with_raw_response.create(model=model, input=TEXTS)
    result = response.parse()  # the SDK asks for base64 and decodes it: both encodings are exercised

    assert response.headers["x-gateway-provider"] == provider
    assert [d.index for d in result.data] == [0, 1]
    assert [d.embedding for d in result.data] == [pytest.approx(vector(t)) for t in TEXTS]
    assert result.usage.prompt_tokens == 9
    assert result.model == model


def test_embeddings_as_plain_floats(providers_gateway: Gateway) -> None:
    result = sdk(providers_gateway).embeddings.create(model="text-embedding-3-small", input="hi", dimensions=4,
                                                      encoding_format="float")

    assert result.data[0].embedding == pytest.approx(vector("hi", 4))


def test_embeddings_from_bedrock_titan(providers_gateway: Gateway) -> None:
    result = sdk(providers_gateway).embeddings.create(model="bedrock-titan-embed-text-v2", input=TEXTS[0])

    assert result.data[0].embedding == pytest.approx(vector(TEXTS[0]))
    assert result.usage.prompt_tokens == 5


def test_bedrock_titan_refuses_a_batch_clearly(providers_gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(providers_gateway).embeddings.create(model="bedrock-titan-embed-text-v2", input=TEXTS)

    assert raised.value.code == "unsupported_parameter"
    assert "bedrock" in raised.value.message and "'input'" in raised.value.message


def test_embeddings_from_a_real_self_hosted_server(providers_gateway: Gateway) -> None:
    result = sdk(providers_gateway).embeddings.create(model="e5-small", input=["sea", "ocean", "tax return"])

    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 384 for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])  # a real model, not noise


def test_a_chat_model_is_refused_for_embeddings(providers_gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(providers_gateway).embeddings.create(model="gpt-4o-mini", input="x")

    assert raised.value.code == "model_not_supported"


@pytest.mark.parametrize(("model", "provider"), [("dall-e-3", "openai"), ("azure-dall-e-3", "azure")])
def test_images_through_openai_and_azure_with_their_cost(providers_gateway: Gateway, model: str,
                                                         provider: str) -> None:
    response = sdk(providers_gateway).images.with_raw_response.generate(model=model, prompt="a lighthouse", n=2)
    result = response.parse()

    assert response.headers["x-gateway-provider"] == provider
    assert len(result.data) == 2
    assert all(d.url and d.url.startswith("https://") for d in result.data)
    assert result.data[0].revised_prompt == "a lighthouse"
    assert float(response.headers["x-gateway-cost-usd"]) == pytest.approx(0.08)


def test_images_from_bedrock_titan_as_base64_with_their_cost(providers_gateway: Gateway) -> None:
    response = sdk(providers_gateway).images.with_raw_response.generate(
        model="bedrock-titan-image-v2", prompt="a lighthouse", n=2, size="512x512", quality="hd",
        response_format="b64_json")
    result = response.parse()

    assert response.headers["x-gateway-provider"] == "bedrock"
    assert [base64.b64decode(d.b64_json or "")[:4] for d in result.data] == [b"\x89PNG"] * 2
    assert float(response.headers["x-gateway-cost-usd"]) == pytest.approx(0.02)  # premium 512x512, $0.01 each


@pytest.mark.parametrize(("params", "field"), [({"response_format": "url"}, "response_format"),
                                               ({"size": "1792x1024"}, "size"), ({"n": 6}, "n")])
def test_what_titan_cannot_make_is_a_400_naming_it(providers_gateway: Gateway, params: dict[str, Any],
                                                   field: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(providers_gateway).images.generate(model="bedrock-titan-image-v2", prompt="a lighthouse", **params)
    assert "bedrock" in raised.value.message and f"'{field}'" in raised.value.message


def test_a_real_size_base64_image_comes_through_kafka(providers_gateway: Gateway) -> None:
    result = sdk(providers_gateway).images.generate(model="dall-e-3", prompt="a lighthouse", size="1024x1024",
                                                    response_format="b64_json")

    png = base64.b64decode(result.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG") and len(png) == 8 + 1024 * 1024  # 1.4 MB of base64, incompressible
