"""A wire-faithful mock of the Bedrock runtime Converse API
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html): it verifies the
SigV4 signature with botocore against the mock's known secret, answers Converse's JSON (toolUse,
stopReason, usage), InvokeModel for Titan embeddings and Titan Image Generator, and errors as `{"message"}`
with the exception name in `x-amzn-ErrorType`."""

from __future__ import annotations

import base64
import os
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.mocks.behaviour import (
    Conversation,
    StreamCut,
    answer,
    failure,
    maybe_stall,
    paced,
    stream_pieces,
    stream_plan,
    vector,
    words,
)
from tests.mocks.openai_mock import serve

ACCESS_KEY_ID = os.environ.get("MOCK_AWS_ACCESS_KEY_ID", "AKIAMOCKBEDROCK00001")
SECRET_KEY = os.environ.get("MOCK_AWS_SECRET_ACCESS_KEY", "mock-secret-access-key")


def _error(status: int, name: str, message: str) -> Response:
    return Response(orjson.dumps({"message": message}), status, media_type="application/json",
                    headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                             "x-amzn-RequestId": str(uuid.uuid4())})


def _signature_problem(request: Request, body: bytes) -> str | None:
    """Recompute the SigV4 signature of the request as received; None when it matches."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "Missing Authentication Token"
    fields = dict(item.strip().split("=", 1) for item in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key_id, _, region, service, _ = fields["Credential"].split("/")
    if key_id != ACCESS_KEY_ID or service != "bedrock":
        return "The security token included in the request is invalid."
    signed = fields["SignedHeaders"].split(";")
    url = f"http://{request.headers['host']}{request.scope['raw_path'].decode()}"
    if request.scope.get("query_string"):
        url += "?" + request.scope["query_string"].decode()
    replay = AWSRequest(method=request.method, url=url, data=body,
                        headers={name: request.headers[name] for name in signed if name in request.headers})
    replay.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_KEY, request.headers.get("x-amz-security-token")),
                       "bedrock", region)
    expected = signer.signature(signer.string_to_sign(replay, signer.canonical_request(replay)), replay)
    if expected != fields["Signature"]:
        return "The request signature we calculated does not match the signature you provided."
    return None


def _conversation(model: str, body: dict[str, Any]) -> Conversation:
    conversation = Conversation(model=model, max_tokens=(body.get("inferenceConfig") or {}).get("maxTokens"))
    conversation.prompt_words = words(" ".join(s.get("text", "") for s in body.get("system") or ()))
    for message in body["messages"]:
        blocks = message.get("content") or []
        text = " ".join(b["text"] for b in blocks if "text" in b)
        conversation.prompt_words += words(text) + 3
        results = [b["toolResult"] for b in blocks if "toolResult" in b]
        if message["role"] == "user" and results:
            content = results[-1].get("content") or [{}]
            first = content[0]
            conversation.tool_result = first.get("text") or orjson.dumps(first.get("json")).decode()
        elif message["role"] == "user":
            conversation.last_user_text, conversation.tool_result = text, None
            conversation.images = sum(1 for b in blocks if "image" in b)
    conversation.tools = [(t["toolSpec"]["name"], (t["toolSpec"].get("inputSchema") or {}).get("json") or {})
                          for t in (body.get("toolConfig") or {}).get("tools") or ()]
    return conversation


def frame(event_type: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One message of the AWS event-stream encoding: prelude (lengths + CRC), string headers, payload, CRC."""
    kind = ":exception-type" if message_type == "exception" else ":event-type"
    headers = b""
    for name, value in ((kind, event_type), (":content-type", "application/json"), (":message-type", message_type)):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    body = orjson.dumps(payload)
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


async def _stream(model: str, result: Any) -> AsyncIterator[bytes]:
    """ConverseStream events in the event-stream framing; a cut sends a modelStreamErrorException."""
    plan = stream_plan(model)
    yield frame("messageStart", {"role": "assistant"})
    sent, index = 0, 0
    pieces = stream_pieces(result, plan)
    try:
        async for piece in paced(pieces, plan):
            sent += 1
            yield frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
    except StreamCut:
        yield frame("modelStreamErrorException", {"message": "The model stream was cut", "originalStatusCode": 500},
                    "exception")
        return
    if pieces:
        yield frame("contentBlockStop", {"contentBlockIndex": 0})
        index = 1
    if result.tool_name:
        yield frame("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
            "toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": result.tool_name}}})
        arguments = orjson.dumps(result.tool_args).decode()
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
            yield frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}})
        yield frame("contentBlockStop", {"contentBlockIndex": index})
    stop = "tool_use" if result.tool_name else ("max_tokens" if result.truncated else "end_turn")
    yield frame("messageStop", {"stopReason": stop})
    completion = sent or result.completion_tokens
    yield frame("metadata", {"usage": {"inputTokens": result.prompt_tokens, "outputTokens": completion,
                                       "totalTokens": result.prompt_tokens + completion}, "metrics": {"latencyMs": 1}})


async def converse_stream(request: Request) -> Response:
    return await converse(request, stream=True)


async def converse(request: Request, stream: bool = False) -> Response:
    body_bytes = await request.body()
    problem = _signature_problem(request, body_bytes)
    if problem:
        return _error(403, "UnrecognizedClientException" if "token" in problem else "AccessDeniedException", problem)
    model = unquote(request.path_params["model_id"])
    try:
        body = orjson.loads(body_bytes)
    except orjson.JSONDecodeError:
        return _error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
    if not body.get("messages"):
        return _error(400, "ValidationException", "A conversation must start with a user message.")
    status = failure(model)
    if status == 429:
        return _error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
    if status:
        name = {500: "InternalServerException", 503: "ServiceUnavailableException",
                400: "ValidationException"}.get(status, "InternalServerException")
        return _error(status, name, f"{name} from the mock")
    await maybe_stall(model)
    result = answer(_conversation(model, body))
    if stream and model.endswith("-sse-framed"):  # a third-party "Bedrock-compatible" server framing it wrong
        events = b"".join(b"data: " + orjson.dumps({"contentBlockDelta": {"delta": {"text": w}}}) + b"\n\n"
                          for w in result.text.split())
        return Response(events, media_type="text/event-stream")
    if stream:
        return StreamingResponse(_stream(model, result), media_type="application/vnd.amazon.eventstream",
                                 headers={"x-amzn-RequestId": str(uuid.uuid4())})
    content: list[dict[str, Any]] = []
    if result.text:
        content.append({"text": result.text})
    if result.tool_name:
        content.append({"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": result.tool_name,
                                    "input": result.tool_args}})
    payload = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use" if result.tool_name else ("max_tokens" if result.truncated else "end_turn"),
        "usage": {"inputTokens": result.prompt_tokens, "outputTokens": result.completion_tokens,
                  "totalTokens": result.prompt_tokens + result.completion_tokens},
        "metrics": {"latencyMs": 1},
    }
    return Response(orjson.dumps(payload), media_type="application/json",
                    headers={"x-amzn-RequestId": str(uuid.uuid4())})


TITAN_IMAGE_SIZES = {(512, 512), (1024, 1024), (768, 768), (1152, 896), (896, 1152), (1280, 768), (768, 1280)}


def _titan_embedding(body: dict[str, Any]) -> Response:
    """`{"inputText"}` in, `{"embedding", "inputTextTokenCount"}` out."""
    if not isinstance(body.get("inputText"), str):
        return _error(400, "ValidationException", "Malformed input request: required key [inputText] not found")
    return Response(orjson.dumps({"embedding": vector(body["inputText"], body.get("dimensions") or 8),
                                  "inputTextTokenCount": words(body["inputText"])}), media_type="application/json")


def _titan_images(body: dict[str, Any]) -> Response:
    """TEXT_IMAGE: `{"taskType", "textToImageParams": {"text"}, "imageGenerationConfig"}` in, `{"images": [base64
    PNG], "error": null}` out (each image a PNG signature and 4 bytes a pixel of the width, random)."""
    if body.get("taskType") != "TEXT_IMAGE" or not isinstance((body.get("textToImageParams") or {}).get("text"), str):
        return _error(400, "ValidationException", "Malformed input request: taskType TEXT_IMAGE with "
                      "textToImageParams.text is required")
    config = body.get("imageGenerationConfig") or {}
    count, width, height = config.get("numberOfImages", 1), config.get("width", 1024), config.get("height", 1024)
    if not 1 <= count <= 5 or (width, height) not in TITAN_IMAGE_SIZES or \
            config.get("quality", "standard") not in ("standard", "premium"):
        return _error(400, "ValidationException", "Malformed input request: imageGenerationConfig is out of range")
    images = [base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(4 * width)).decode() for _ in range(count)]
    return Response(orjson.dumps({"images": images, "error": None}), media_type="application/json")


async def invoke(request: Request) -> Response:
    """InvokeModel for Titan text embeddings and Titan Image Generator."""
    body_bytes = await request.body()
    problem = _signature_problem(request, body_bytes)
    if problem:
        return _error(403, "AccessDeniedException", problem)
    model = unquote(request.path_params["model_id"])
    if model.startswith("amazon.titan-embed"):
        return _titan_embedding(orjson.loads(body_bytes))
    if model.startswith("amazon.titan-image-generator"):
        return _titan_images(orjson.loads(body_bytes))
    return _error(400, "ValidationException", f"The mock only invokes Titan embeddings and images, not {model}.")


app = Starlette(routes=[
    Route("/model/{model_id:path}/converse", converse, methods=["POST"]),
    Route("/model/{model_id:path}/converse-stream", converse_stream, methods=["POST"]),
    Route("/model/{model_id:path}/invoke", invoke, methods=["POST"]),
])

if __name__ == "__main__":
    serve(app, 18184)
