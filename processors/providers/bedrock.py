"""AWS Bedrock Converse API (Claude, Titan, Llama model ids alike): SigV4-signed with botocore's signer,
`toolConfig` / `toolUse` / `toolResult`, images as bytes, region per route; Titan embeddings and Titan Image
Generator through InvokeModel.

References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-image.html
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from processors.providers.base import (
    ChatResult,
    EmbeddingsResult,
    HttpCall,
    ImagesResult,
    ProviderError,
    StreamDelta,
    StreamFailed,
    StreamState,
    Unsupported,
    Upstream,
    inline_parts,
    kind_for_status,
    refuse_unless_supported,
    retry_after_seconds,
    text_of,
)

_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
         "content_filtered": "content_filter", "guardrail_intervened": "content_filter"}
_ERROR_KINDS = {"ThrottlingException": "rate_limited", "ServiceUnavailableException": "server_error",
                "InternalServerException": "server_error", "ModelTimeoutException": "timeout",
                "ModelNotReadyException": "server_error", "AccessDeniedException": "upstream_auth",
                "UnrecognizedClientException": "upstream_auth", "ResourceNotFoundException": "not_found",
                "ValidationException": "bad_request"}


def _content(message: dict[str, Any], provider: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"text": a} if kind == "text"
        else {"image": {"format": a.split("/")[-1].replace("jpg", "jpeg"), "source": {"bytes": b}}}
        for kind, a, b in inline_parts(message, provider)]
    if not message.get("parts") and message.get("content"):
        blocks.append({"text": message["content"]})
    for call in message.get("tool_calls") or ():
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": call["name"],
                                   "input": orjson.loads(call["arguments"] or "{}")}})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    text = text_of(message)
    try:
        value = orjson.loads(text)
        content = [{"json": value}] if isinstance(value, dict) else [{"text": text}]
    except orjson.JSONDecodeError:
        content = [{"text": text}]
    return {"toolResult": {"toolUseId": message["tool_call_id"], "content": content}}


def converse_body(request: dict[str, Any], provider: str) -> dict[str, Any]:
    refuse_unless_supported(request, provider, seed=False, parallel_tool_calls=False, strict_tools=False)
    if request.get("response_format_json") and orjson.loads(request["response_format_json"])["type"] != "text":
        raise Unsupported(provider, "response_format", "Converse has no JSON mode")
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for message in request["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system.append({"text": text_of(message)})
        elif role == "tool":
            if messages and messages[-1]["role"] == "user" and "toolResult" in messages[-1]["content"][-1]:
                messages[-1]["content"].append(_tool_result(message))
            else:
                messages.append({"role": "user", "content": [_tool_result(message)]})
        else:
            messages.append({"role": role, "content": _content(message, provider)})
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    config = {theirs: request[ours] for ours, theirs in
              (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"))
              if request.get(ours) is not None}
    if request.get("stop"):
        config["stopSequences"] = request["stop"]
    if config:
        body["inferenceConfig"] = config
    choice = request.get("tool_choice")
    if request.get("tools") and choice != "none":
        tool_config: dict[str, Any] = {"tools": [{"toolSpec": {
            "name": t["name"], **({"description": t["description"]} if t.get("description") else {}),
            "inputSchema": {"json": orjson.loads(t["parameters_json"]) if t.get("parameters_json")
                            else {"type": "object", "properties": {}}}}} for t in request["tools"]]}
        if choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif choice and choice.startswith("function:"):
            tool_config["toolChoice"] = {"tool": {"name": choice[9:]}}
        body["toolConfig"] = tool_config
    return body


def sign(method: str, url: str, body: bytes, region: str, upstream: Upstream) -> dict[str, str]:
    """SigV4 headers for one call, from botocore's signer (service `bedrock`)."""
    credentials = Credentials(upstream.options["access_key_id"], upstream.api_key or "",
                              upstream.options.get("session_token") or None)
    request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(credentials, "bedrock", region).add_auth(request)
    return dict(request.headers.items())


def build_chat(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    body = orjson.dumps(converse_body(request, upstream.provider))
    operation = "converse-stream" if request.get("stream") else "converse"
    url = f"{upstream.base_url}/model/{quote(upstream.model, safe='')}/{operation}"
    return HttpCall("POST", url, sign("POST", url, body, upstream.options["region"], upstream), body)


def build_embeddings(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    """Titan text embeddings through InvokeModel: one text per call."""
    if len(request["input"]) != 1:
        raise Unsupported(upstream.provider, "input", "Titan embeds one text per request")
    payload: dict[str, Any] = {"inputText": request["input"][0]}
    if request.get("dimensions") is not None:
        payload["dimensions"] = request["dimensions"]
    body = orjson.dumps(payload)
    url = f"{upstream.base_url}/model/{quote(upstream.model, safe='')}/invoke"
    return HttpCall("POST", url, sign("POST", url, body, upstream.options["region"], upstream), body)


def parse_embeddings(body: dict[str, Any]) -> EmbeddingsResult:
    return EmbeddingsResult([body["embedding"]], int(body.get("inputTextTokenCount") or 0))


_TITAN_SIZES = ("512x512", "1024x1024")  # of OpenAI's sizes, those Titan makes
_TITAN_QUALITY = {"standard": "standard", "hd": "premium"}
_TITAN_MAX_IMAGES = 5


def build_images(request: dict[str, Any], upstream: Upstream) -> HttpCall:
    """Titan Image Generator (TEXT_IMAGE) through InvokeModel: PNGs in base64 only, up to 5 a request."""
    provider = upstream.provider
    if request.get("response_format") == "url":
        raise Unsupported(provider, "response_format", "Titan returns images as b64_json only")
    if request["n"] > _TITAN_MAX_IMAGES:
        raise Unsupported(provider, "n", f"Titan makes at most {_TITAN_MAX_IMAGES} images a request")
    size = request.get("size") or "1024x1024"
    if size == "auto":
        size = "1024x1024"
    if size not in _TITAN_SIZES:
        raise Unsupported(provider, "size", f"Titan makes {' or '.join(_TITAN_SIZES)} of these sizes")
    quality = request.get("quality") or "standard"
    if quality not in _TITAN_QUALITY and quality != "auto":
        raise Unsupported(provider, "quality", "Titan has standard and hd (its premium)")
    width, _, height = size.partition("x")
    body = orjson.dumps({"taskType": "TEXT_IMAGE", "textToImageParams": {"text": request["prompt"]},
                         "imageGenerationConfig": {"numberOfImages": request["n"], "width": int(width),
                                                   "height": int(height),
                                                   "quality": _TITAN_QUALITY.get(quality, "standard")}})
    url = f"{upstream.base_url}/model/{quote(upstream.model, safe='')}/invoke"
    return HttpCall("POST", url, sign("POST", url, body, upstream.options["region"], upstream), body)


def parse_images(body: dict[str, Any]) -> ImagesResult:
    return ImagesResult(int(time.time()), [{"url": None, "b64_json": image, "revised_prompt": None}
                                           for image in body["images"]])


PARSES_TOOL_ARGUMENTS = True
STREAM_FORMAT = "aws-eventstream"
_STREAM_EXCEPTIONS = {"throttlingException": "rate_limited", "modelStreamErrorException": "server_error",
                      "internalServerException": "server_error", "serviceUnavailableException": "server_error",
                      "validationException": "bad_request"}


def parse_stream_event(name: str | None, data: dict[str, Any], state: StreamState) -> list[StreamDelta]:
    """ConverseStream events (the event-stream framing is decoded by botocore in the HTTP runner)."""
    if name and name.startswith("exception:"):
        kind = name.split(":", 1)[1]
        raise StreamFailed(ProviderError(_STREAM_EXCEPTIONS.get(kind, "server_error"),  # type: ignore[arg-type]
                                         f"{kind}: {data.get('message', '')}"))
    if name == "contentBlockStart" and "toolUse" in (data.get("start") or {}):
        tool = data["start"]["toolUse"]
        return [StreamDelta(tool_calls=({"index": state.tool_call_index(data["contentBlockIndex"]),
                                         "id": tool["toolUseId"], "name": tool["name"], "arguments": ""},))]
    if name == "contentBlockDelta":
        delta = data["delta"]
        if "text" in delta:
            return [StreamDelta(delta["text"])]
        if "toolUse" in delta:
            return [StreamDelta(tool_calls=({"index": state.tool_call_index(data["contentBlockIndex"]), "id": None,
                                             "name": None, "arguments": delta["toolUse"].get("input", "")},))]
    elif name == "messageStop":
        state.ended = True
        state.finish_reason = _STOP.get(data.get("stopReason") or "end_turn", "stop")
    elif name == "metadata":
        usage = data.get("usage") or {}
        state.cached_tokens = int(usage.get("cacheReadInputTokens") or 0)
        state.cache_write_tokens = int(usage.get("cacheWriteInputTokens") or 0)
        state.prompt_tokens = int(usage.get("inputTokens") or 0) + state.cached_tokens + state.cache_write_tokens
        state.completion_tokens = int(usage.get("outputTokens") or 0)
    return []


def parse_chat(body: dict[str, Any]) -> ChatResult:
    content = body["output"]["message"]["content"]
    usage = body.get("usage") or {}
    calls = tuple({"id": b["toolUse"]["toolUseId"], "name": b["toolUse"]["name"],
                   "arguments": orjson.dumps(b["toolUse"].get("input") or {}).decode()}
                  for b in content if "toolUse" in b)
    return ChatResult(
        content="".join(b["text"] for b in content if "text" in b),
        finish_reason=_STOP.get(body.get("stopReason") or "end_turn", "stop"),
        prompt_tokens=(int(usage.get("inputTokens") or 0) + int(usage.get("cacheReadInputTokens") or 0)
                       + int(usage.get("cacheWriteInputTokens") or 0)),
        completion_tokens=int(usage.get("outputTokens") or 0),
        cached_tokens=int(usage.get("cacheReadInputTokens") or 0),
        cache_write_tokens=int(usage.get("cacheWriteInputTokens") or 0),
        tool_calls=calls,
    )


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    """`{"message": ...}` with the exception name in `x-amzn-errortype`."""
    name = headers.get("x-amzn-errortype", "").split(":")[0]
    try:
        message = str(orjson.loads(body).get("message") or f"HTTP {status}")
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:200].decode(errors="replace") or f"HTTP {status}"
    kind = _ERROR_KINDS.get(name, kind_for_status(status))
    return ProviderError(kind, f"{name or 'Error'}: {message}", status, retry_after_seconds(headers))  # type: ignore[arg-type]
