"""Each provider mock is faithful: the provider's official SDK, pointed straight at it, works, uses
tools, and sees the provider's errors as its own exception types."""

from __future__ import annotations

import base64
import json

import anthropic
import boto3
import botocore.exceptions
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import MOCK_KEYS

WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_azure_openai_sdk_on_the_deployment_route(openai_mock: str) -> None:
    client = openai.AzureOpenAI(azure_endpoint=openai_mock.removesuffix("/v1"), api_key=MOCK_KEYS["MOCK_AZURE_API_KEY"],
                                api_version="2024-10-21", max_retries=0)

    completion = client.chat.completions.create(model="my-gpt4o-deployment",
                                                messages=[{"role": "user", "content": "ping"}])
    assert completion.choices[0].message.content == "Hello from the mock! You said: ping"

    with pytest.raises(openai.BadRequestError) as filtered:
        client.chat.completions.create(model="deployment-content-filter", messages=[{"role": "user", "content": "x"}])
    assert filtered.value.code == "content_filter"

    wrong = openai.AzureOpenAI(azure_endpoint=openai_mock.removesuffix("/v1"), api_key="nope",
                               api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])


def test_anthropic_sdk_messages_with_tool_use_and_errors(anthropic_mock: str) -> None:
    client = anthropic.Anthropic(base_url=anthropic_mock, api_key=MOCK_KEYS["MOCK_ANTHROPIC_API_KEY"], max_retries=0)

    message = client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100, system="Be brief.",
                                     messages=[{"role": "user", "content": "ping"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello from the mock! You said: ping"
    assert message.usage.input_tokens > 0

    tool = {"name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"],
            "input_schema": WEATHER_TOOL["parameters"]}
    called = client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100, tools=[tool],
                                    messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert called.stop_reason == "tool_use"
    use = next(b for b in called.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})

    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-fail-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=anthropic_mock, api_key="bad", max_retries=0).messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_google_genai_sdk_generate_content_with_a_function_call(gemini_mock: str) -> None:
    client = genai.Client(api_key=MOCK_KEYS["MOCK_GEMINI_API_KEY"], http_options=types.HttpOptions(
        base_url=gemini_mock, api_version="v1beta"))

    response = client.models.generate_content(model="gemini-1.5-pro", contents="ping")
    assert response.text == "Hello from the mock! You said: ping"
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count

    declaration = types.FunctionDeclaration(name="get_weather", description="Weather in a city",
                                            parameters_json_schema=WEATHER_TOOL["parameters"])
    called = client.models.generate_content(
        model="gemini-1.5-pro", contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[declaration])],
                                           automatic_function_calling=types.AutomaticFunctionCallingConfig(
                                               disable=True)))
    assert called.function_calls and called.function_calls[0].name == "get_weather"
    assert called.function_calls[0].args == {"city": "Paris"}

    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model="gemini-fail-429", contents="x")
    assert limited.value.code == 429


def test_boto3_bedrock_converse_is_signed_and_answered(bedrock_mock: str) -> None:
    def client(secret: str):  # boto3 clients are untyped
        return boto3.client("bedrock-runtime", endpoint_url=bedrock_mock, region_name="us-east-1",
                            aws_access_key_id=MOCK_KEYS["MOCK_AWS_ACCESS_KEY_ID"], aws_secret_access_key=secret,
                            config=botocore.config.Config(retries={"max_attempts": 1}))

    bedrock = client(MOCK_KEYS["MOCK_AWS_SECRET_ACCESS_KEY"])
    response = bedrock.converse(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
                                messages=[{"role": "user", "content": [{"text": "ping"}]}])
    assert response["output"]["message"]["content"][0]["text"] == "Hello from the mock! You said: ping"
    assert response["stopReason"] == "end_turn"

    called = bedrock.converse(
        modelId="meta.llama3-70b-instruct-v1:0", messages=[{"role": "user", "content": [{"text": "Weather?"}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather",
                                            "inputSchema": {"json": WEATHER_TOOL["parameters"]}}}]})
    assert called["output"]["message"]["content"][0]["toolUse"]["input"] == {"city": "Paris"}

    with pytest.raises(botocore.exceptions.ClientError) as throttled:
        bedrock.converse(modelId="titan-fail-429", messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(botocore.exceptions.ClientError) as unsigned:
        client("the-wrong-secret").converse(modelId="m", messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert unsigned.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_boto3_invoke_model_makes_titan_images(bedrock_mock: str) -> None:
    bedrock = boto3.client("bedrock-runtime", endpoint_url=bedrock_mock, region_name="us-east-1",
                           aws_access_key_id=MOCK_KEYS["MOCK_AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=MOCK_KEYS["MOCK_AWS_SECRET_ACCESS_KEY"])
    request = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a lighthouse"},
               "imageGenerationConfig": {"numberOfImages": 2, "width": 512, "height": 512, "quality": "premium"}}
    response = bedrock.invoke_model(modelId="amazon.titan-image-generator-v2:0", body=json.dumps(request),
                                    contentType="application/json", accept="application/json")
    images = json.loads(response["body"].read())["images"]
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        bedrock.invoke_model(modelId="amazon.titan-image-generator-v2:0",
                             body=json.dumps({**request, "imageGenerationConfig": {"numberOfImages": 9}}))
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_every_mock_streams_as_its_sdk_expects(openai_mock: str, anthropic_mock: str, gemini_mock: str,
                                               bedrock_mock: str) -> None:
    expected = "Hello from the mock! You said: stream"

    oai = openai.OpenAI(base_url=openai_mock, api_key=MOCK_KEYS["MOCK_OPENAI_API_KEY"], max_retries=0)
    chunks = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "stream"}],
                                         stream=True, stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected

    claude = anthropic.Anthropic(base_url=anthropic_mock, api_key=MOCK_KEYS["MOCK_ANTHROPIC_API_KEY"], max_retries=0)
    with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50,
                                messages=[{"role": "user", "content": "stream"}]) as stream:
        assert "".join(stream.text_stream) == expected
        assert stream.get_final_message().stop_reason == "end_turn"

    gem = genai.Client(api_key=MOCK_KEYS["MOCK_GEMINI_API_KEY"],
                       http_options=types.HttpOptions(base_url=gemini_mock, api_version="v1beta"))
    assert "".join(r.text or "" for r in gem.models.generate_content_stream(model="gemini-1.5-pro",
                                                                            contents="stream")) == expected

    bedrock = boto3.client("bedrock-runtime", endpoint_url=bedrock_mock, region_name="us-east-1",
                           aws_access_key_id=MOCK_KEYS["MOCK_AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=MOCK_KEYS["MOCK_AWS_SECRET_ACCESS_KEY"])
    events = list(bedrock.converse_stream(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
                                          messages=[{"role": "user", "content": [{"text": "stream"}]}])["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == expected
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 7
